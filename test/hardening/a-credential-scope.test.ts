// Threat model, the agent, credential scope: a credential goes to its tool's (scheme, host, port) and nowhere else.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { request, ProxyAgent, Agent } from 'undici'
import { startUpstream, upstreamPki, type Seen, type Upstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { systemClock } from '../../src/util/clock.js'
import { bodyOf, headerValues, raw, startRawUpstream, type WireRequest } from './helpers.js'
import { completeResponse, exchange } from './tunnel-client.js'
import { sidekeyCa, tlsThroughTunnel } from '../helpers/connect.js'

const DAY = 86_400_000
const pki = await upstreamPki()

/** Redirects on /redirect-to?u=..., else echoes. */
function redirecting (req: IncomingMessage, res: ServerResponse, seen: Seen): void {
  const u = new URL(seen.url, 'http://x')
  if (u.pathname === '/redirect') {
    res.writeHead(302, { location: u.searchParams.get('to') ?? '/', 'content-length': 0 })
    res.end()
    return
  }
  const body = JSON.stringify({ url: seen.url, authorization: req.headers.authorization ?? null })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

const upA = await startUpstream({ tls: await pki.cert('api.tool.test'), handler: redirecting })
const upB = await startUpstream({ tls: await pki.cert('b.tool.test'), handler: redirecting })
const rawPlain = await startRawUpstream()
// a self-signed upstream, one with a certificate for another name, one whose certificate has expired.
const strangerCa = await loadOrCreateCa({ dir: mkdtempSync(join(tmpdir(), 'sidekey-stranger-')), validityMs: 2 * DAY })
const stranger = await strangerCa.mintLeaf('selfsigned.tool.test', DAY)
const upSelfSigned = await startUpstream({ tls: { certPem: stranger.certPem + strangerCa.chainPem, keyPem: stranger.keyPem } })
const upWrongName = await startUpstream({ tls: await pki.cert('other.test') })
const pastCa = await loadOrCreateCa({ dir: mkdtempSync(join(tmpdir(), 'sidekey-past-')), validityMs: 30 * DAY, clock: { ...systemClock, now: () => Date.now() - 10 * DAY } })
const expired = await pastCa.mintLeaf('expired.tool.test', DAY)
const upExpired = await startUpstream({ tls: { certPem: expired.certPem + pastCa.chainPem, keyPem: expired.keyPem } })
const upstreams: Upstream[] = [upA, upB, upSelfSigned, upWrongName, upExpired]
const trustedCa = readFileSync(pki.caFile, 'utf8') + pastCa.certPem
const caFile = join(mkdtempSync(join(tmpdir(), 'sidekey-roots-')), 'roots.pem')
await import('node:fs/promises').then((fs) => fs.writeFile(caFile, trustedCa))
// The SNI each TLS upstream was asked for, to check it is the host name even though the address is pinned.
const sni: string[] = []
for (const u of upstreams) u.server.on('secureConnection', (s: { servername?: string | false }) => sni.push(String(s.servername)))
t.teardown(async () => { await Promise.all([...upstreams.map((u) => u.close()), rawPlain.close()]) })

const sk = await startSidekey(t, `
instance_id: agent-a
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${caFile}
resolve:
  api.tool.test: 127.0.0.1
  b.tool.test: 127.0.0.1
  plain.tool.test: 127.0.0.1
  selfsigned.tool.test: 127.0.0.1
  wrongname.tool.test: 127.0.0.1
  expired.tool.test: 127.0.0.1
issuers:
  local: { type: local_jwt, ttl: 10m }
tools:
  # Distinct audiences: tools with the same issuer, scopes and audience share one credential by design.
  a: { match: { host: api.tool.test, port: ${upA.port} }, issuer: local, audience: https://a, placeholder: sidekey }
  b: { match: { host: b.tool.test, port: ${upB.port} }, issuer: local, audience: https://b, placeholder: sidekey }
  plain:
    match: { host: plain.tool.test, port: ${rawPlain.port} }
    issuer: local
    audience: https://plain
    plaintext: true
    strip: [Authorization, X-Api-Key]
  selfsigned: { match: { host: selfsigned.tool.test, port: ${upSelfSigned.port} }, issuer: local }
  wrongname: { match: { host: wrongname.tool.test, port: ${upWrongName.port} }, issuer: local }
  expired: { match: { host: expired.tool.test, port: ${upExpired.port} }, issuer: local }
`)
const ca = sidekeyCa(sk.caDir)
const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca } })
const forward = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
t.teardown(async () => { await agent.close(); await forward.close() })

/** The `tool` claim of the JWT in an Authorization header (the claims are not verified here; proxy-core does). */
function toolOf (authorization: unknown): string | undefined {
  if (typeof authorization !== 'string') return undefined
  const payload = authorization.replace(/^Bearer /, '').split('.')[1]
  return payload === undefined ? undefined : (JSON.parse(Buffer.from(payload, 'base64url').toString()) as { tool?: string }).tool
}

async function get (url: string, headers: Record<string, string> = { authorization: 'Bearer sidekey' }): Promise<{ status: number, headers: Record<string, unknown>, body: string }> {
  const res = await request(url, { dispatcher: url.startsWith('https:') ? agent : forward, headers })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

const total = (): number => upstreams.reduce((n, u) => n + u.seen.length, 0) + rawPlain.requests.length

t.test('a redirect is passed through as sent; following it, B gets B\'s credential and never A\'s', async (t) => {
  const bUrl = `https://b.tool.test:${upB.port}`
  const first = await get(`https://api.tool.test:${upA.port}/redirect?to=${encodeURIComponent(`${bUrl}/redirect?to=${encodeURIComponent(`${bUrl}/2`)}`)}`)
  t.equal(first.status, 302)
  t.equal(first.headers.location, `${bUrl}/redirect?to=${encodeURIComponent(`${bUrl}/2`)}`, 'Location untouched')
  t.equal(toolOf(upA.seen.at(-1)!.headers.authorization), 'a')
  const second = await get(String(first.headers.location))
  t.equal(second.status, 302)
  const third = await get(String(second.headers.location))
  t.equal(third.status, 200)
  t.same(upB.seen.slice(-2).map((s) => toolOf(s.headers.authorization)), ['b', 'b'], 'B/1 and B/2 each got B\'s credential')
  const aTokens = new Set(upA.seen.map((s) => s.headers.authorization))
  t.notOk(upB.seen.some((s) => aTokens.has(s.headers.authorization)), 'no A token ever reached B')
})

t.test('the same host on another port or scheme gets no credential (rule key is scheme, host, port)', async (t) => {
  const before = total()
  // https://api.tool.test on B's port: the host is A's, the port is not. And plain http on A's port + 1.
  const other = await get(`https://api.tool.test:${upB.port}/`).catch((e: Error) => ({ status: /403/.test(e.message) ? 403 : 0 }))
  t.equal(other.status, 403, 'CONNECT to A on another port refused')
  t.equal((await get(`http://api.tool.test:${upB.port}/`)).status, 403)
  t.equal((await get(`http://api.tool.test:${rawPlain.port}/`)).status, 403)
  t.equal(total(), before, 'nothing was forwarded')
})

t.test('look-alike hosts are denied; case and one trailing dot are the same host', async (t) => {
  const p = upA.port
  for (const host of ['api.tool.test.evil.test', 'evilapi.tool.test', 'xn--pi-7kc.tool.test', 'api.tool.test..', 'api.tool.tes']) {
    const before = total()
    const r = await raw(sk.proxyPort, `GET http://${host}:${p}/ HTTP/1.1\r\nHost: ${host}:${p}\r\nAuthorization: Bearer sidekey\r\n\r\n`, { until: completeResponse })
    t.ok(r.status === 403 || r.status === 400, `${host}: ${r.status}`)
    t.equal(total(), before, `${host}: nothing forwarded`)
  }
  // IDN: the Cyrillic "а" in "аpi" is a different host (IDNA → xn--pi-7kc), never api.tool.test.
  const idn = await raw(sk.proxyPort, Buffer.concat([Buffer.from('GET http://'), Buffer.from('аpi.tool.test', 'utf8'), Buffer.from(`:${p}/ HTTP/1.1\r\nHost: x\r\n\r\n`)]))
  t.ok(idn.status === 400 || idn.status === 403, `IDN look-alike refused (${idn.status})`)
  for (const target of [`http://api.tool.test%2F@evil.test:${p}/`, `http://evil.test%2F.api.tool.test:${p}/`, `http://api.tool.test@evil.test:${p}/`, `http://evil.test@api.tool.test:${p}/`]) {
    const r = await raw(sk.proxyPort, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`)
    t.equal(r.status, 400, `${target} refused`)
  }
  for (const host of ['API.TOOL.TEST', 'api.tool.test.', 'Api.Tool.Test.']) {
    const r = await raw(sk.proxyPort, `GET http://${host}:${p}/case HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer sidekey\r\nConnection: close\r\n\r\n`)
    t.equal(r.status, 200, `${host} is api.tool.test`)
    t.equal(toolOf(upA.seen.at(-1)!.headers.authorization), 'a')
  }
  // CONNECT with look-alike authorities.
  for (const authority of [`api.tool.test.evil.test:${p}`, `evilapi.tool.test:${p}`, `api.tool.test:${p + 1}`]) {
    const r = await raw(sk.proxyPort, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
    t.equal(r.status, 403, `CONNECT ${authority}`)
    t.ok(r.closed, 'and closed')
  }
})

t.test('absolute URL decides, the Host header is replaced by its authority, and the mismatch is audited', async (t) => {
  const before = rawPlain.requests.length
  const r = await raw(sk.proxyPort, `GET http://plain.tool.test:${rawPlain.port}/a5 HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n`)
  t.equal(r.status, 200)
  const seen = rawPlain.requests[before]!
  t.same(headerValues(seen, 'host'), [`plain.tool.test:${rawPlain.port}`], 'exactly one Host, the URL authority')
  t.ok(headerValues(seen, 'authorization')[0]?.startsWith('Bearer '), 'credential chosen from the URL authority')
  const used = sk.log.events('credential.used').find((e) => e.path === '/a5')
  t.match(used, { tool: 'plain', host: 'plain.tool.test', host_mismatch: true })
})

t.test('two Host lines, or userinfo in the target, are 400 and the connection is closed', async (t) => {
  const before = total()
  const two = await raw(sk.proxyPort, `GET http://plain.tool.test:${rawPlain.port}/ HTTP/1.1\r\nHost: plain.tool.test\r\nHost: evil.test\r\n\r\n`)
  t.equal(two.status, 400)
  t.ok(two.closed)
  for (const userinfo of ['user:pw@', 'user@', ':@']) {
    const r = await raw(sk.proxyPort, `GET http://${userinfo}plain.tool.test:${rawPlain.port}/ HTTP/1.1\r\nHost: plain.tool.test\r\n\r\n`)
    t.equal(r.status, 400, userinfo)
    t.ok(r.closed)
  }
  t.equal(total(), before)
})

t.test('CONNECT to A then a ClientHello for B: handshake aborted, no leaf for B, no upstream connection', async (t) => {
  const before = total()
  await t.rejects(tlsThroughTunnel(sk.proxyPort, `api.tool.test:${upA.port}`, { servername: 'b.tool.test', ca }))
  await t.rejects(tlsThroughTunnel(sk.proxyPort, `api.tool.test:${upA.port}`, { servername: 'evil.test', ca }))
  // The right name still works on the same proxy: what was refused was the name, not the tunnel.
  const ok = await tlsThroughTunnel(sk.proxyPort, `api.tool.test:${upA.port}`, { servername: 'api.tool.test', ca })
  t.equal(ok.getPeerX509Certificate()?.subjectAltName, 'DNS:api.tool.test', 'the leaf names the CONNECT target only')
  ok.destroy()
  t.equal(total(), before)
  const refused = sk.log.events('egress.denied').filter((e) => e.reason === 'misdirected' && e.host === 'api.tool.test' && e.port === upA.port)
  t.same(refused.map((e) => e.requested).filter((r) => r === 'b.tool.test' || r === 'evil.test').sort(), ['b.tool.test', 'evil.test'], 'each refused server name is audited')
})

t.test('inside an intercepted tunnel, a Host that is not the CONNECT target is 421 and goes nowhere', async (t) => {
  const before = total()
  for (const host of [`b.tool.test:${upB.port}`, `api.tool.test:${upB.port}`, 'api.tool.test', 'evil.test']) {
    const s = await tlsThroughTunnel(sk.proxyPort, `api.tool.test:${upA.port}`, { servername: 'api.tool.test', ca })
    const r = await exchange(s, `GET / HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer sidekey\r\n\r\n`, completeResponse)
    t.match(r.text, /^HTTP\/1\.1 421 /, host)
    s.destroy()
  }
  const s = await tlsThroughTunnel(sk.proxyPort, `api.tool.test:${upA.port}`, { servername: 'api.tool.test', ca })
  const abs = await exchange(s, `GET https://b.tool.test:${upB.port}/ HTTP/1.1\r\nHost: b.tool.test:${upB.port}\r\n\r\n`, completeResponse)
  t.match(abs.text, /^HTTP\/1\.1 421 /, 'absolute-form to another host inside the tunnel')
  s.destroy()
  t.equal(total(), before)
  const refused = sk.log.events('egress.denied').filter((e) => e.reason === 'misdirected' && e.host === 'api.tool.test')
  for (const host of [`b.tool.test:${upB.port}`, 'evil.test', `https://b.tool.test:${upB.port}`]) {
    t.ok(refused.some((e) => e.requested === host && e.path === '/' && String(e.request_id).length > 0), `audited with what was asked: ${host}`)
  }
})

t.test('plain-http absolute-form to an https tool goes upstream over TLS', async (t) => {
  const before = upA.seen.length
  const r = await get(`http://api.tool.test:${upA.port}/a10`)
  t.equal(r.status, 200)
  t.equal(upA.seen[before]!.tls, true)
  t.equal(toolOf(upA.seen[before]!.headers.authorization), 'a')
})

t.test('self-signed, wrong-name or expired upstream certificates are 502 and no request is written', async (t) => {
  for (const [name, up, code] of [['selfsigned', upSelfSigned, /SIDEKEY_UPSTREAM_TLS/], ['wrongname', upWrongName, /SIDEKEY_UPSTREAM_TLS/], ['expired', upExpired, /CERT_HAS_EXPIRED/]] as const) {
    const r = await get(`https://${name}.tool.test:${up.port}/`)
    t.equal(r.status, 502, name)
    // A generic body: a fixed hint in place of the TLS library's message, no certificate content, no host.
    const body = JSON.parse(r.body) as Record<string, string>
    t.same(Object.keys(body).sort(), ['detail', 'error', 'request_id', 'tool'], 'generic body')
    t.match(body.detail, /^upstream certificate (not trusted: set upstream_ca_file|expired or not yet valid|does not name this host)$/)
    t.equal(up.seen.length, 0, `${name}: no request reached it`)
    const used = sk.log.events('credential.used').filter((e) => e.tool === name).at(-1)
    t.match(used, { status: 502, error: code })
  }
  t.ok(sni.length > 0 && sni.every((n) => n.endsWith('.tool.test')), `SNI was the host name on every dial (${[...new Set(sni)].join(',')})`)
})

t.test('placeholder, duplicate, lower-case Authorization and Proxy-Authorization are removed; exactly one injected value goes out', async (t) => {
  const before = rawPlain.requests.length
  const r = await raw(sk.proxyPort, `GET http://plain.tool.test:${rawPlain.port}/a12 HTTP/1.1\r\nHost: plain.tool.test\r\n` +
    'Authorization: Bearer sidekey\r\nauthorization: Bearer other-value\r\nAUTHORIZATION: Basic eDp5\r\nX-Api-Key: sidekey\r\n' +
    'Proxy-Authorization: Basic cHJveHk6cHc=\r\nConnection: close\r\n\r\n')
  t.equal(r.status, 200)
  const seen: WireRequest = rawPlain.requests[before]!
  const auth = headerValues(seen, 'authorization')
  t.equal(auth.length, 1, 'one Authorization')
  t.equal(toolOf(auth[0]), 'plain')
  t.same(headerValues(seen, 'proxy-authorization'), [])
  t.same(headerValues(seen, 'x-api-key'), [])
  t.notMatch(seen.bytes.toString('latin1'), /sidekey|other-value|eDp5|cHJveHk/)
})

t.test('Connection naming the injected header cannot remove the credential', async (t) => {
  for (const conn of ['close, Authorization', 'Authorization', 'keep-alive, authorization, x-api-key']) {
    const before = rawPlain.requests.length
    const r = await raw(sk.proxyPort, `GET http://plain.tool.test:${rawPlain.port}/a13 HTTP/1.1\r\nHost: plain.tool.test\r\nConnection: ${conn}\r\n\r\n`, { until: completeResponse })
    t.equal(r.status, 200)
    t.equal(toolOf(headerValues(rawPlain.requests[before]!, 'authorization')[0]), 'plain', conn)
  }
})

t.test('a destination with no rule is 403 and is not forwarded unauthenticated', async (t) => {
  const before = total()
  const r = await raw(sk.proxyPort, `GET http://127.0.0.1:${rawPlain.port}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, { until: completeResponse })
  t.equal(r.status, 403)
  t.match(bodyOf(r.text), { error: 'egress_denied' })
  const c = await raw(sk.proxyPort, 'CONNECT nowhere.test:443 HTTP/1.1\r\nHost: nowhere.test:443\r\n\r\n')
  t.equal(c.status, 403)
  t.equal(total(), before)
})

t.test('an issuer that is down gives 503 with Retry-After; the placeholder is never forwarded', async (t) => {
  const down = await startRawUpstream()
  t.teardown(() => down.close())
  const sk2 = await startSidekey(t, `
instance_id: agent-a15
ca: { dir: {{CA_DIR}} }
resolve: { plain.tool.test: 127.0.0.1 }
issuers:
  broken: { type: exec, command: ["/bin/false"] }
tools:
  plain: { match: { host: plain.tool.test, port: ${down.port} }, issuer: broken, plaintext: true }
`)
  const r = await raw(sk2.proxyPort, `GET http://plain.tool.test:${down.port}/ HTTP/1.1\r\nHost: plain.tool.test\r\nAuthorization: Bearer sidekey\r\n\r\n`, { until: completeResponse })
  t.equal(r.status, 503)
  t.match(r.text, /\r\nretry-after: \d+\r\n/i)
  const requestId = String(bodyOf(r.text).request_id)
  t.same(bodyOf(r.text), { error: 'credential_unavailable', tool: 'plain', request_id: requestId }, 'the documented body, with the request id')
  t.match(r.text, new RegExp(`\\r\\nx-sidekey-request-id: ${requestId}\\r\\n`, 'i'), 'the same request id in a header')
  t.equal(down.connections, 0, 'nothing reached the upstream')
  const direct = await request(`${sk2.adminUrl}/readyz`, { dispatcher: new Agent() })
  t.equal(direct.statusCode, 503)
  await direct.body.dump()
})
