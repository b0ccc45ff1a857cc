// Threat model, the agent, read-back and path confusion: one path, one route. Two tools share a host: A `/v1/safe/` (GET only) and G `/v1/`. Every
// spelling of a path is routed as its normal form, the upstream receives exactly that form, and a spelling that an
// upstream could read as another route is refused with 400, through absolute-form and intercepted CONNECT (h1, h2).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as h2connect, type ClientHttp2Session } from 'node:http2'
import { once } from 'node:events'
import fc from 'fast-check'
import { parseConfig } from '../../src/config/load.js'
import { Router } from '../../src/proxy/router.js'
import { normalizePath } from '../../src/net/path.js'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { raw } from './helpers.js'
import { until } from '../helpers/until.js'
import { completeResponse, exchange } from './tunnel-client.js'
import { handshake } from '../protocols/helpers.js'
import { tlsThroughTunnel } from '../helpers/connect.js'

const pki = await upstreamPki()
const up = await startUpstream({ tls: await pki.cert('api.a.test') })
t.teardown(() => up.close())
const P = up.port
const AUTHORITY = `api.a.test:${P}`
const config = `
instance_id: agent-h4
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { api.a.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  A: { match: { host: api.a.test, port: ${P}, path_prefix: /v1/safe/, methods: [GET] }, issuer: local, scopes: [a] }
  G: { match: { host: api.a.test, port: ${P}, path_prefix: /v1/ }, issuer: local, scopes: [g] }
  GL: { match: { host: api.a.test, port: ${P}, path_prefix: /api/v4/ }, issuer: local, scopes: [gl], allow_encoded_slash: true }
`
const sk = await startSidekey(t, config)
const router = new Router(parseConfig(config.replace('{{CA_DIR}}', '/tmp/unused'), 'h4.yaml', {}).tools)
const ca = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')

/** What the agent got, and what (if anything) reached the upstream for it. */
interface Outcome { status: number, upstreamUrl?: string, tool?: string }

/** The tool whose credential the upstream saw: the `tool` claim of the injected JWT. */
function toolOf (authorization: string | undefined): string | undefined {
  const jwt = authorization?.replace(/^Bearer /, '').split('.')[1]
  return jwt === undefined ? undefined : (JSON.parse(Buffer.from(jwt, 'base64url').toString()) as { tool: string }).tool
}

function outcome (status: number, before: number): Outcome {
  if (up.seen.length === before) return { status }
  const seen = up.seen.at(-1)!
  return { status, upstreamUrl: seen.url, tool: toolOf(seen.headers.authorization) }
}

const absoluteForm = async (method: string, path: string): Promise<Outcome> => {
  const before = up.seen.length
  const r = await raw(sk.proxyPort, `${method} http://${AUTHORITY}${path} HTTP/1.1\r\nHost: ${AUTHORITY}\r\ncontent-length: 0\r\n\r\n`, { until: completeResponse })
  return outcome(r.status ?? 0, before)
}

const tunnelH1 = async (method: string, path: string): Promise<Outcome> => {
  const before = up.seen.length
  const socket = await tlsThroughTunnel(sk.proxyPort, AUTHORITY, { servername: 'api.a.test', ca })
  try {
    const r = await exchange(socket, `${method} ${path} HTTP/1.1\r\nHost: ${AUTHORITY}\r\ncontent-length: 0\r\n\r\n`, completeResponse)
    return outcome(Number(/^HTTP\/1\.1 (\d{3})/.exec(r.text)?.[1] ?? 0), before)
  } finally {
    socket.destroy()
  }
}

let session: ClientHttp2Session | undefined
const tunnelH2 = async (method: string, path: string): Promise<Outcome> => {
  if (session === undefined || session.destroyed || session.closed) {
    const socket = await tlsThroughTunnel(sk.proxyPort, AUTHORITY, { servername: 'api.a.test', ca, alpn: ['h2'] })
    session = h2connect(`https://${AUTHORITY}`, { createConnection: () => socket })
    session.on('error', () => {})
  }
  const before = up.seen.length
  const stream = session.request({ ':method': method, ':path': path, ':authority': AUTHORITY }, { endStream: true })
  const [headers] = await once(stream, 'response') as [Record<string, string | number>]
  stream.resume()
  await once(stream, 'end')
  return outcome(Number(headers[':status']), before)
}
t.teardown(() => session?.destroy())

const TRANSPORTS = { 'absolute-form': absoluteForm, 'CONNECT h1': tunnelH1, 'CONNECT h2': tunnelH2 } as const

// Every probe of the adversarial report, with its outcome now. `sent` is what the upstream must receive.
const PROBES: Array<{ id: string, path: string, method: string, status: number, tool?: string, sent?: string }> = [
  { id: 'H4.1', path: '/v1/%73afe/x', method: 'POST', status: 403 }, // is /v1/safe/x: A, which allows GET only
  { id: 'H4.1', path: '/v1/%73afe/x', method: 'GET', status: 200, tool: 'A', sent: '/v1/safe/x' },
  { id: 'H4.2', path: '/v1//safe/x', method: 'POST', status: 400 },
  { id: 'H4.3', path: '/v1/safe;/x', method: 'POST', status: 400 },
  { id: 'H4.4', path: '/v1/Safe/x', method: 'POST', status: 400 },
  { id: 'H4.5', path: '/v1/safe%2fx', method: 'POST', status: 400 },
  { id: 'H4.6', path: '/v1/safe/..%2fadmin', method: 'GET', status: 400 },
  { id: 'H4.6', path: '/v1/safe/%2e%2e%2fadmin', method: 'GET', status: 400 },
  { id: 'H4.7', path: '/v1/safe/..;/admin', method: 'GET', status: 400 },
  { id: 'H4.8', path: '/v1/safe/%5c..%5cadmin', method: 'GET', status: 400 },
  { id: 'H4.8', path: '/v1/safe/%5c..%5c', method: 'GET', status: 400 },
  { id: 'H4.9', path: '/v1/safe/%252e%252e/admin', method: 'GET', status: 400 },
  { id: 'H4.10', path: '/v1/safe/..%c0%af', method: 'GET', status: 400 },
  { id: 'H4.10', path: '/v1/safe/%e0%80%afadmin', method: 'GET', status: 400 },
  { id: 'H4.11', path: '/v1/safe/x\\..\\..\\admin', method: 'GET', status: 400 },
  { id: 'H4.11', path: '/v1/safe/%00x', method: 'GET', status: 400 },
  // What stays allowed, in its one form: dot segments resolved, a double escape kept as it is where decoding it
  // once more changes nothing, hex upper-cased, the query byte for byte.
  { id: 'H4.12', path: '/v1/safe/%2e%2e/admin', method: 'POST', status: 200, tool: 'G', sent: '/v1/admin' },
  { id: 'H4.12', path: '/v1/x/%252e%252e/y', method: 'POST', status: 200, tool: 'G', sent: '/v1/x/%252e%252e/y' },
  { id: 'H4.12', path: '/v1/x/caf%c3%a9z?q=%2f&b=..%2F', method: 'POST', status: 200, tool: 'G', sent: '/v1/x/caf%C3%A9z?q=%2f&b=..%2F' },
  // An escaped / or \ is refused on a tool that has not opted in, even where it cannot change the route...
  { id: 'H4.5', path: '/v1/x/caf%c3%a9%2fz', method: 'POST', status: 400 },
  { id: 'H4.5', path: '/v1/x/a%5Cb', method: 'GET', status: 400 },
  // ...and sent as it is (hex upper-cased) to a tool whose API needs it (GitLab's encoded project path).
  { id: 'H4.13', path: '/api/v4/projects/group%2fname', method: 'GET', status: 200, tool: 'GL', sent: '/api/v4/projects/group%2Fname' },
  { id: 'H4.12', path: '/v1/Other/x', method: 'POST', status: 200, tool: 'G', sent: '/v1/Other/x' },
]

for (const [name, send] of Object.entries(TRANSPORTS)) {
  t.test(`every probe through ${name}`, async (t) => {
    for (const p of PROBES) {
      const got = await send(p.method, p.path)
      const label = `${p.id} ${name} ${p.method} ${p.path}`
      t.equal(got.status, p.status, label)
      if (p.status === 200) t.same(got, { status: 200, upstreamUrl: p.sent, tool: p.tool }, `${label}: the upstream got ${p.sent} with ${p.tool}'s credential`)
      else t.equal(got.upstreamUrl, undefined, `${label}: nothing reached the upstream`)
    }
  })
}

t.test('refusals are audited: 400 as egress.denied bad_request, 403 as A\'s method_denied', async (t) => {
  await until(() => sk.log.events('egress.denied').filter((e) => e.reason === 'bad_request').length >= 3 * PROBES.filter((p) => p.status === 400).length)
  const denied = sk.log.events('egress.denied').filter((e) => e.reason === 'bad_request')
  t.ok(denied.every((e) => e.host === 'api.a.test' && typeof e.request_id === 'string'), 'each names the host and request')
  t.ok(denied.some((e) => e.path === '/v1//safe/x'), 'with the path as the agent wrote it')
  const methodDenied = sk.log.events('credential.used').filter((e) => e.outcome === 'method_denied')
  t.ok(methodDenied.length >= 3 && methodDenied.every((e) => e.tool === 'A' && e.path === '/v1/safe/x'), 'the %73afe spelling is audited as A\'s /v1/safe/x')
  const body = await raw(sk.proxyPort, `GET http://${AUTHORITY}/v1//safe/x HTTP/1.1\r\nHost: ${AUTHORITY}\r\n\r\n`, { until: completeResponse })
  t.match(body.text, /"error":"bad_request"/)
  t.match(body.text, /ambiguous path: with empty segments merged/, 'the answer says why')
})

t.test('a WebSocket upgrade is routed and sent in the same normal form', async (t) => {
  const refused = await raw(sk.proxyPort, handshake(`http://${AUTHORITY}/v1//safe/ws`, AUTHORITY), { until: completeResponse })
  t.equal(refused.status, 400)
  const before = up.seen.length
  // The echo upstream does not speak WebSocket: it answers 200, which is relayed. What matters is the path it saw.
  const r = await raw(sk.proxyPort, handshake(`http://${AUTHORITY}/v1/%73afe/./ws`, AUTHORITY), { until: completeResponse })
  t.equal(r.status, 200)
  t.equal(up.seen.length, before + 1)
  t.equal(up.seen.at(-1)!.url, '/v1/safe/ws')
  t.equal(toolOf(up.seen.at(-1)!.headers.authorization), 'A')
})

// Paths made of the pieces that path confusion is built from; a few hundred runs through the running proxy.
// Mostly plain segments, so that about half the sample is served.
const PLAIN = ['v1', 'safe', 'x', 'admin', 'Other', '%73afe', '%7e', '.', '..', '%2e', 'caf%c3%a9']
const TRICKY = ['Safe', 'SAFE', '%73AFE', '%2E%2e', '%2f', '%2F', '%5c', '%252e', '%252f', '%25', 'a;b', ';', '', '%c0%af', '..;', '.%2e']
const segment = fc.oneof({ arbitrary: fc.constantFrom(...PLAIN), weight: 6 }, { arbitrary: fc.constantFrom(...TRICKY), weight: 1 })
const anyPath = fc.tuple(fc.constantFrom('/v1/', '/v1/safe/', '/', '/%761/'), fc.array(segment, { minLength: 1, maxLength: 4 })).map(([head, s]) => head + s.join('/'))

t.test('the path the upstream receives is the one that was matched, through the running proxy', async (t) => {
  let served = 0
  let refused = 0
  await fc.assert(fc.asyncProperty(anyPath, fc.constantFrom('GET', 'POST'), fc.constantFrom(...Object.keys(TRANSPORTS) as Array<keyof typeof TRANSPORTS>), async (path, method, transport) => {
    const got = await TRANSPORTS[transport](method, path)
    if (got.upstreamUrl === undefined) {
      refused++
      return [400, 403].includes(got.status)
    }
    served++
    // The tool whose credential went is the tool the router gives for exactly the path the upstream received.
    const route = router.route('https', 'api.a.test', P, got.upstreamUrl)
    return route.kind === 'tool' && route.tool.name === got.tool && got.upstreamUrl === normalizePath(path)
  }), { numRuns: 200 })
  t.comment(`end to end: ${served} served, ${refused} refused of 200`)
  t.ok(served > 20 && refused > 20, 'the sample holds both')
  // And the audit agrees: every credential.used path is a path the upstream received.
  const sent = new Set(up.seen.map((s) => s.url.split('?')[0]))
  t.ok(sk.log.events('credential.used').filter((e) => e.outcome === undefined).every((e) => sent.has(String(e.path))))
})
