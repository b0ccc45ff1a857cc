// Property tests for the tool matcher (threat model: the agent, credential scope): a credential's tool is chosen by exact (scheme, host,
// port, path prefix), wildcards only where written, the most specific rule first, and nothing else.
import t from 'tap'
import fc from 'fast-check'
import { tool as toolSchema, type ToolConfig } from '../../src/config/schema.js'
import { Router } from '../../src/proxy/router.js'

const HOSTS = ['api.a.test', 'b.a.test', 'a.test', 'x.b.test', '*.a.test', '*.b.test']
const REQUEST_HOSTS = ['api.a.test', 'b.a.test', 'a.test', 'x.b.test', 'y.x.b.test', 'b.test', 'api.a.test.evil', 'evilapi.a.test', 'apia.test', 'z.api.a.test', 'a.tes']
const PREFIXES = [undefined, '/', '/v1', '/v1/', '/v1/x', '/v2/']
const PATHS = ['/', '/v1', '/v1/', '/v1x', '/v1/x', '/v1/xy', '/v1/x/y', '/v2', '/v2/', '/v2/z', '/other', '/v1?q=1']

interface Spec { host: string, port?: number, prefix?: string, methods?: string[], plaintext: boolean }

const spec: fc.Arbitrary<Spec> = fc.record({
  host: fc.constantFrom(...HOSTS),
  port: fc.option(fc.constantFrom(443, 8443), { nil: undefined }),
  prefix: fc.constantFrom(...PREFIXES),
  methods: fc.option(fc.subarray(['GET', 'POST', 'DELETE'], { minLength: 1 }), { nil: undefined }),
  plaintext: fc.boolean(),
}, { requiredKeys: ['host', 'plaintext'] })

// The config refuses two tools on one (host, port, prefix); the router may assume there are none.
const specs = fc.uniqueArray(spec, { minLength: 1, maxLength: 6, selector: (s) => `${s.host} ${s.port ?? 443} ${s.prefix ?? '/'}` })

const request = fc.record({
  scheme: fc.constantFrom('http' as const, 'https' as const),
  host: fc.constantFrom(...REQUEST_HOSTS),
  port: fc.constantFrom(80, 443, 444, 8443),
  path: fc.constantFrom(...PATHS),
  method: fc.constantFrom('GET', 'POST', 'DELETE'),
})

function build (list: Spec[]): Router {
  const tools: Record<string, ToolConfig> = {}
  list.forEach((s, i) => {
    tools[`t${i}`] = toolSchema.parse({
      match: { host: s.host, ...(s.port === undefined ? {} : { port: s.port }), ...(s.prefix === undefined ? {} : { path_prefix: s.prefix }), ...(s.methods === undefined ? {} : { methods: s.methods }) },
      issuer: 'i',
      plaintext: s.plaintext,
      http2: false,
    })
  })
  return new Router(tools)
}

// The reference rules, written plainly.
const wildcard = (s: Spec): boolean => s.host.startsWith('*.')
function hostOk (s: Spec, host: string): boolean {
  return wildcard(s) ? host.endsWith(s.host.slice(1)) && host.length > s.host.length - 1 : host === s.host
}
function portOk (s: Spec, scheme: string, port: number): boolean {
  const own = s.port ?? 443
  return port === own || (scheme === 'http' && port === 80 && own === 443 && !s.plaintext)
}
function pathOk (s: Spec, path: string): boolean {
  const prefix = s.prefix ?? '/'
  const p = path.split('?')[0]!
  if (prefix === '/') return true
  if (prefix.endsWith('/')) return p.startsWith(prefix) || p === prefix.slice(0, -1)
  return p === prefix || p.startsWith(prefix + '/')
}
const applies = (s: Spec, r: { scheme: string, host: string, port: number, path: string }): boolean => hostOk(s, r.host) && portOk(s, r.scheme, r.port) && pathOk(s, r.path)

t.test('the router picks a tool only when its rule applies, always when one does, and the most specific one', async (t) => {
  fc.assert(fc.property(specs, request, (list, r) => {
    const router = build(list)
    const route = router.match(r.scheme, r.host, r.port, r.path.split('?')[0]!)
    const candidates = list.filter((s) => applies(s, r))
    if (route.kind === 'none') return candidates.length === 0
    const chosen = list[Number(route.tool.name.slice(1))]!
    if (!applies(chosen, r)) return false // soundness: never a tool whose rule does not apply
    // Exact hosts before wildcards; then the longer suffix; then the longer path prefix.
    const rank = (s: Spec): [number, number, number] => [wildcard(s) ? 0 : 1, s.host.length, (s.prefix ?? '/').length]
    const better = (a: [number, number, number], b: [number, number, number]): boolean => a[0] !== b[0] ? a[0] > b[0] : a[1] !== b[1] ? a[1] > b[1] : a[2] > b[2]
    if (candidates.some((s) => better(rank(s), rank(chosen)))) return false
    // The method plays no part in routing: match.methods is the tool's policy step (pipeline/policy.ts).
    return route.upstreamPort === (chosen.port ?? 443) && route.upstreamScheme === (r.scheme === 'https' || !chosen.plaintext ? 'https' : 'http')
  }), { numRuns: 5000 })
  t.pass()
})

t.test('a look-alike host never matches an exact rule, and a wildcard never matches its bare suffix', async (t) => {
  fc.assert(fc.property(fc.domain(), fc.domain(), (tool, other) => {
    const router = build([{ host: tool, plaintext: false }, { host: `*.${tool}`, plaintext: false, prefix: '/w/' }])
    const route = router.match('https', other, 443, '/')
    if (other === tool) return route.kind === 'tool' && route.tool.name === 't0'
    if (other.endsWith(`.${tool}`)) return route.kind === 'none' || route.tool.name === 't1'
    return route.kind === 'none'
  }), { numRuns: 2000 })
  t.pass()
})

t.test('ownsHost agrees with match on some path', async (t) => {
  fc.assert(fc.property(specs, request, (list, r) => {
    const router = build(list)
    const any = list.some((s) => hostOk(s, r.host) && (portOk(s, 'https', r.port) || portOk(s, 'http', r.port)))
    return router.ownsHost(r.host, r.port) === any
  }), { numRuns: 3000 })
  t.pass()
})
