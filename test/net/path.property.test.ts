// Property tests for one path, one route (threat model: the agent, read-back and path confusion) at the normaliser + router level, many runs:
// (a) spellings that are the same path under RFC 3986 §6.2.2 get the same answer: the same tool, or the same refusal;
// (b) a path that is accepted is read as the same route by upstreams that decode, merge and resolve it their own way
//     (independent, plainly written interpreters: WHATWG URL, POSIX normalize, a servlet-style ;param strip, case).
import t from 'tap'
import fc from 'fast-check'
import { posix } from 'node:path'
import { tool as toolSchema, type ToolConfig } from '../../src/config/schema.js'
import { Router, type Route } from '../../src/proxy/router.js'
import { normalizePath, removeDotSegments } from '../../src/net/path.js'
import { SidekeyError } from '../../src/errors.js'

const tool = (prefix: string, methods?: string[]): ToolConfig => toolSchema.parse({
  match: { host: 'api.a.test', path_prefix: prefix, ...(methods === undefined ? {} : { methods }) },
  issuer: 'i',
  http2: false,
})
const router = new Router({ A: tool('/v1/safe/', ['GET']), G: tool('/v1/'), B: tool('/v2/Admin/'), C: tool('/v2/') })

/** One answer for a request path: the tool and allow/deny, or the 400 refusal. */
function answer (target: string, method = 'POST'): string {
  try {
    const path = normalizePath(target).split('?')[0]!
    const route = router.route('https', 'api.a.test', 443, path)
    // The method is the tool's own policy step after routing (pipeline/policy.ts): refused by the tool it routes to.
    if (route.kind === 'tool' && route.tool.methods?.has(method) === false) return `method_denied:${route.tool.name}`
    return show(route)
  } catch (err) {
    if (err instanceof SidekeyError && err.status === 400) return '400'
    throw err
  }
}
const show = (r: Route): string => r.kind === 'none' ? 'none' : `${r.kind}:${r.tool.name}`

const UNRESERVED = /[A-Za-z0-9\-._~]/
const SEGMENTS = ['v1', 'v2', 'safe', 'Safe', 'admin', 'Admin', 'x', '.', '..', '', 'a;b', '..;', '%2F', '%2f', '%5C', '%25', '%252e', '%252F',
  '%3B', '%c3%a9', '%C3%A9', 'caf%c3%a9', '~u_-.', '%41']
const basePath = fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 6 }).map((s) => '/' + s.join('/'))

/** Another spelling of `path`: unreserved characters percent-encoded, escape hex in either case, `./` and `zz/../` inserted before segments. */
const respelling = (path: string): fc.Arbitrary<string> => {
  const segments = path.slice(1).split('/')
  return fc.tuple(
    fc.array(fc.nat(3), { minLength: path.length, maxLength: path.length }),
    fc.array(fc.constantFrom('', '', './', 'zz/../', '%2e/', 'q%7e/%2E%2e/'), { minLength: segments.length, maxLength: segments.length })
  ).map(([coins, inserts]) => {
    const spelt = segments.map((seg, i) => {
      let out = ''
      for (let j = 0; j < seg.length; j++) {
        const c = seg[j]!
        const coin = coins[(i * 7 + j) % coins.length]!
        if (c === '%') { // an escape: flip the case of its hex digits
          const hex = seg.slice(j + 1, j + 3)
          out += '%' + (coin % 2 === 0 ? hex.toLowerCase() : hex.toUpperCase())
          j += 2
        } else if (UNRESERVED.test(c) && coin === 0) {
          const hex = c.charCodeAt(0).toString(16)
          out += '%' + (j % 2 === 0 ? hex.toUpperCase() : hex)
        } else {
          out += c
        }
      }
      return inserts[i]! + out
    })
    return '/' + spelt.join('/')
  })
}

t.test('(a) spellings of one path under RFC 3986 get one answer: same tool, same allow or refusal', async (t) => {
  fc.assert(fc.property(basePath.chain((p) => fc.tuple(fc.constant(p), respelling(p))), fc.constantFrom('GET', 'POST'), ([base, spelt], method) => {
    const a = answer(base, method)
    const b = answer(spelt, method)
    if (a !== b) return false
    return a === '400' || normalizePath(base) === normalizePath(spelt)
  }), { numRuns: 5000 })
  t.pass()
})

// Upstream readings, written independently of src/net/path.ts.
const decodeOnce = (p: string): string => p.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
const whatwg = (p: string): string => new URL('http://h' + p.replace(/[?#]/g, encodeURIComponent)).pathname
const decodeRepeated = (p: string): string => { let q = p; for (let i = 0; i < 4 && /%[0-9A-Fa-f]{2}/.test(q); i++) q = decodeOnce(q); return q }
const INTERPRETERS: Array<[string, (p: string) => string, boolean]> = [
  ['as sent (RFC 3986)', (p) => p, false],
  ['decoded once, WHATWG URL (\\ is /)', (p) => whatwg(decodeOnce(p)), false],
  ['decoded repeatedly, WHATWG URL', (p) => whatwg(decodeRepeated(p)), false],
  ['decoded once, slashes merged, dots resolved (nginx)', (p) => posix.normalize(decodeOnce(p)), false],
  [';params dropped, decoded once, normalised (servlet)', (p) => posix.normalize(decodeOnce(p.replace(/;[^/]*/g, ''))), false],
  ['case-insensitive, decoded once, WHATWG URL', (p) => whatwg(decodeOnce(p)).toLowerCase(), true],
  ['case-insensitive, everything at once', (p) => posix.normalize(decodeRepeated(p.replace(/;[^/]*/g, '')).replace(/;[^/]*/g, '').replaceAll('\\', '/')).toLowerCase(), true],
]

t.test('(b) an accepted path is the same route for every upstream reading of it', async (t) => {
  let accepted = 0
  fc.assert(fc.property(basePath, (target) => {
    let path: string
    let route: Route
    try {
      path = normalizePath(target)
      route = router.route('https', 'api.a.test', 443, path)
    } catch {
      return true
    }
    accepted++
    for (const [, read, fold] of INTERPRETERS) {
      let other: string
      try { other = read(path) } catch { continue }
      if (show(router.match('https', 'api.a.test', 443, other, fold)) !== show(route)) return false
    }
    return true
  }), { numRuns: 5000 })
  t.ok(accepted > 1000, `most of the sample is accepted (${accepted})`)
})

t.test('the probes of the adversarial report', async (t) => {
  const probes: Array<[string, string, string]> = [
    ['/v1/safe/x', 'POST', 'method_denied:A'], ['/v1/%73afe/x', 'POST', 'method_denied:A'], ['/v1/%73afe/x', 'GET', 'tool:A'],
    ['/v1//safe/x', 'GET', '400'], ['/v1/safe;/x', 'GET', '400'], ['/v1/Safe/x', 'POST', '400'], ['/v1/safe%2fx', 'POST', '400'],
    ['/v1/safe/..%2fadmin', 'GET', '400'], ['/v1/safe/%2e%2e%2fadmin', 'GET', '400'], ['/v1/safe/..;/admin', 'GET', '400'],
    ['/v1/safe/%5c..%5c', 'GET', '400'], ['/v1/safe/%252e%252e/admin', 'GET', '400'], ['/v1/safe/..%c0%af', 'GET', '400'],
    ['/v1/safe/%e0%80%af', 'GET', '400'], ['/v1/safe/%ed%a0%80', 'GET', '400'], ['/v1/safe/%c3', 'GET', '400'],
    ['/v1/safe/a\\b', 'GET', '400'], ['/v1/safe/%00', 'GET', '400'], ['/v1/safe/%7F', 'GET', '400'], ['/v1/safe/a%zz', 'GET', '400'],
    ['/v1/safe/a#b', 'GET', '400'], ['/v1/x?a=b#c', 'GET', '400'], ['/v1/x?a=\x01', 'GET', '400'], ['v1/x', 'GET', '400'], ['/v1/caf\u00e9', 'GET', '400'],
    ['/v1/safe/%2e%2e/admin', 'POST', 'tool:G'], ['/v1/x/%252e%252e/y', 'POST', 'tool:G'], ['/v1/Other', 'POST', 'tool:G'],
    ['/v2/admin/x', 'POST', '400'], ['/v2/ADMIN/x', 'POST', '400'], ['/v2/Admin/x', 'POST', 'tool:B'], ['/v2/other/x', 'POST', 'tool:C'],
    ['/v1/x/%2F/y', 'POST', '400'], ['/v1/x;a=b/y', 'POST', 'tool:G'], ['/v1/x//y', 'POST', 'tool:G'],
    // No tool as sent; a servlet reads `..;` as `..` and %5C as a backslash inside a segment, so `/v1` (tool G).
    ['/..;/%2F/v1/%5C/..;', 'POST', '400'], ['/..;/%2f/v2/%3B/..;', 'POST', '400'],
  ]
  for (const [path, method, expected] of probes) t.equal(answer(path, method), expected, `${method} ${JSON.stringify(path)}`)
  t.equal(normalizePath('/a/%7e%7E%41%3a%3A/./b/../c?q=%2f&r=..%2F&s=%7e'), '/a/~~A%3A%3A/c?q=%2f&r=..%2F&s=%7e', 'unreserved decoded, hex upper-cased, dots removed, query untouched')
  t.equal(removeDotSegments('/a/b/..'), '/a/')
  t.equal(removeDotSegments('/..'), '/')
  t.equal(removeDotSegments('/a//..'), '/a/')
})

t.test('absolute-form keeps the path as the agent wrote it, for the one normaliser', async (t) => {
  const { absoluteTarget } = await import('../../src/proxy/ingress/absolute-target.js')
  const cases: Array<[string, string]> = [
    ['http://api.a.test/v1/%2e%2e/x', '/v1/%2e%2e/x'], ['http://api.a.test?x=1', '/?x=1'], ['http://api.a.test', '/'],
    ['https://API.A.TEST:8443/a%2fb?q=%2F', '/a%2fb?q=%2F'], ['http://api.a.test\\..\\x', '/\\..\\x'], ['http://api.a.test#f', '/#f'],
  ]
  for (const [url, pathAndQuery] of cases) t.equal(absoluteTarget(url).pathAndQuery, pathAndQuery, url)
  t.equal(absoluteTarget('https://API.A.TEST:8443/a%2fb').host, 'api.a.test')
  const refusal = (f: () => unknown): number | undefined => { try { f(); return undefined } catch (err) { return (err as SidekeyError).status } }
  for (const url of ['http://api.a.test\\..\\x', 'http://api.a.test#f']) t.equal(refusal(() => normalizePath(absoluteTarget(url).pathAndQuery)), 400, url)
  for (const url of ['http:///x', 'http://a.test:99999/%41', 'http://a b/%41']) t.equal(refusal(() => absoluteTarget(url)), 400, url)
})
