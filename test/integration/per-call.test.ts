import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose'
import { parseConfig } from '../../src/config/load.js'
import { startUpstream, upstreamPki, type UpstreamHandler } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { rejectionOf } from '../config/helpers.js'
import { auditLine } from '../protocols/helpers.js'

/**
 * `per_call` tokens through the running proxy, checked by a downstream that does what a service relying on them
 * would: verify against sidekey's JWKS, then hold `htm` and `htu` to the request it actually got.
 */
const pki = await upstreamPki()
/** The downstream's own URL for a request: its scheme, the Host it was addressed as, the path without query. */
const urlOf = (req: IncomingMessage, tls: boolean): string => `${tls ? 'https' : 'http'}://${req.headers.host ?? ''}${(req.url ?? '').split('?')[0]}`
/** Tokens the downstream accepted, with their claims. */
const accepted: JWTPayload[] = []
/** `/flaky…` answers 401 once per path, as an upstream would to a token it could not verify yet. */
const flaky = new Set<string>()
const downstream = (tls: boolean): UpstreamHandler => (req, res) => {
  const refuse = (why: string): void => { res.writeHead(401, { 'content-type': 'text/plain' }); res.end(why) }
  const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
  if ((req.url ?? '').startsWith('/flaky') && !flaky.has(req.url!)) { flaky.add(req.url!); refuse('not yet'); return }
  jwtVerify(token, jwks, { issuer: 'https://sidekey.test' }).then(({ payload }) => {
    if (payload.htm !== req.method) { refuse(`htm ${String(payload.htm)} is not ${req.method}`); return }
    if (payload.htu !== urlOf(req, tls)) { refuse(`htu ${String(payload.htu)} is not ${urlOf(req, tls)}`); return }
    accepted.push(payload)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(payload))
  }, (err: Error) => refuse(err.message))
}
const tlsUp = await startUpstream({ tls: await pki.cert('api.call.test'), handler: downstream(true) })
const plainUp = await startUpstream({ handler: downstream(false) })
t.teardown(() => tlsUp.close())
t.teardown(() => plainUp.close())

const sk = await startSidekey(t, `
instance_id: agent-call
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { api.call.test: 127.0.0.1, plain.call.test: 127.0.0.1 }
issuers:
  ed: { type: local_jwt, alg: EdDSA, issuer: https://sidekey.test }
  ec: { type: local_jwt, alg: ES256, issuer: https://sidekey.test }
tools:
  api: { match: { host: api.call.test, port: ${tlsUp.port} }, issuer: ed, scopes: [read], audience: https://api.call.test, per_call: true }
  plain: { match: { host: plain.call.test, port: ${plainUp.port} }, issuer: ec, plaintext: true, per_call: { ttl: 20s } }
`)
const jwks = createRemoteJWKSet(new URL(`${sk.adminUrl}/.well-known/jwks.json`))
const tunnelled = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: readFileSync(join(sk.caDir, 'ca.pem'), 'utf8') } })
const direct = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
t.teardown(() => tunnelled.close())
t.teardown(() => direct.close())

const apiUrl = `https://api.call.test:${tlsUp.port}`
const plainUrl = `http://plain.call.test:${plainUp.port}`

t.test('every call gets its own token, bound to its method, URL and task; the audit names each by its jti', async (t) => {
  const calls = [
    { url: `${apiUrl}/v1/issues?page=2`, method: 'GET', task: 'ticket-42/step:1' },
    { url: `${apiUrl}/v1/issues`, method: 'POST', task: 'ticket-42/step:2' },
    { url: `${plainUrl}/rows/7`, method: 'DELETE', task: 'ticket-43' },
  ]
  const seen: JWTPayload[] = []
  for (const c of calls) {
    const res = await request(c.url, { method: c.method, dispatcher: c.url.startsWith('https') ? tunnelled : direct, headers: { 'x-sidekey-task': c.task } })
    const text = await res.body.text()
    t.equal(res.statusCode, 200, `${c.method} ${c.url}: the downstream accepted it (${text.slice(0, 80)})`)
    const claims = JSON.parse(text) as JWTPayload
    t.match(claims, { htm: c.method, htu: c.url.split('?')[0], task: c.task, sub: 'agent-call', jti: String })
    t.ok(claims.exp! - claims.iat! === (c.url.startsWith('https') ? 60 : 20), 'ttl: 60 s by default, or per_call.ttl')
    seen.push(claims)
    const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.credential_id === claims.jti)
    t.match(used, { task: c.task, method: c.method, status: 200 }, "credential_id is that call's jti")
  }
  t.equal(new Set(seen.map((c) => c.jti)).size, 3, 'three calls, three tokens')
  t.match(seen[0], { tool: 'api', scope: 'read', aud: 'https://api.call.test' }, "today's claims are all there too")
  const algs = [tlsUp, tlsUp, plainUp].map((u, i) => decodeProtectedHeader(String(u.seen.filter((s) => s.method === calls[i]!.method).at(-1)!.headers.authorization).slice(7)).alg)
  t.same(algs, ['EdDSA', 'EdDSA', 'ES256'], 'signed with the issuer\'s alg, verified against the same JWKS')
  t.equal(sk.log.events('credential.issued').filter((e) => e.tool === 'api').length, 1, 'per-call tokens are not issued events: the used line names them')
})

t.test('a token captured from one call is refused when replayed to another path or method', async (t) => {
  const res = await request(`${plainUrl}/orders/1`, { dispatcher: direct })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  const captured = String(plainUp.seen.at(-1)!.headers.authorization)
  const replay = async (method: string, path: string): Promise<{ status: number, why: string }> => {
    const r = await request(`http://127.0.0.1:${plainUp.port}${path}`, { method, headers: { host: `plain.call.test:${plainUp.port}`, authorization: captured } })
    return { status: r.statusCode, why: await r.body.text() }
  }
  t.match(await replay('GET', '/orders/2'), { status: 401, why: /^htu / }, 'another path')
  t.match(await replay('DELETE', '/orders/1'), { status: 401, why: /^htm / }, 'another method')
  t.match(await replay('GET', '/orders/1?more=1'), { status: 200 }, 'the very operation it was minted for (the query is not bound) still verifies')
})

t.test('a call without X-Sidekey-Task gets a token without task', async (t) => {
  const res = await request(`${apiUrl}/untasked`, { dispatcher: tunnelled })
  t.equal(res.statusCode, 200)
  const claims = await res.body.json() as JWTPayload
  t.notOk('task' in claims)
  t.equal(claims.htu, `${apiUrl}/untasked`)
})

t.test('a 401 replay is sent with a token of its own', async (t) => {
  const res = await request(`${plainUrl}/flaky/1`, { method: 'PUT', body: 'x', dispatcher: direct, headers: { 'x-sidekey-task': 'retry-me' } })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  const [first, second] = plainUp.seen.filter((s) => s.url === '/flaky/1').map((s) => decodeJwt(String(s.headers.authorization).slice(7)))
  t.not(first!.jti, second!.jti, 'the rejected token is not reused')
  t.match(second, { htm: 'PUT', task: 'retry-me' })
  const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.path === '/flaky/1')
  t.match(used, { replayed: true, credential_id: second!.jti, status: 200 })
})

t.test('config: per_call needs a local_jwt issuer and excludes max_uses, each named at file:line:col', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig([
    'instance_id: t',
    'issuers:',
    '  mounted: { type: file, path: /run/secrets/key }',
    '  local: { type: local_jwt }',
    'tools:',
    '  a: { match: { host: a.test }, issuer: mounted, per_call: true }',
    '  b: { match: { host: b.test }, issuer: local, per_call: { ttl: 30s }, refresh: { max_uses: 10 } }',
    '  c: { match: { host: c.test }, issuer: local, per_call: false, refresh: { max_uses: 10 } }',
  ].join('\n'), 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:6:50: tools.a.per_call: per_call needs a local_jwt issuer (a token is signed for each call with sidekey\'s own keys); issuer "mounted" is file',
    'x.yaml:7:83: tools.b.refresh.max_uses: max_uses has no effect with per_call: every call already gets its own token',
  ])
})
