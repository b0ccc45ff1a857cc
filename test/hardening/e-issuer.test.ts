// Threat model, faults, issuer outages through the proxy (the credential engine's own tests cover E1-E7 in isolation):
// E1 issuer outage while a token is cached, E7 an upstream 401 that no fresh token cures.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request, Agent } from 'undici'
import { startSidekey } from '../helpers/sidekey.js'
import { FakeClock } from '../credentials/fake-clock.js'
import { headerValues, raw, startRawUpstream } from './helpers.js'
import { completeResponse } from './tunnel-client.js'
import { until } from '../helpers/until.js'

type Mode = 'ok' | 'error500' | 'error429' | 'down'

/** A token endpoint whose answer the test switches; counts the requests it saw. */
async function idp (t: Test, expiresIn: number): Promise<{ url: string, calls: () => number, set: (m: Mode) => void }> {
  let mode: Mode = 'ok'
  let calls = 0
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      calls++
      if (mode === 'down') { req.socket.destroy(); return }
      if (mode !== 'ok') {
        res.writeHead(mode === 'error429' ? 429 : 500, { 'retry-after': '1', 'content-type': 'application/json' })
        res.end('{"error":"temporarily_unavailable"}')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ access_token: `tok-${randomBytes(6).toString('hex')}`, token_type: 'Bearer', expires_in: expiresIn }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`, calls: () => calls, set: (m) => { mode = m } }
}

t.test('an issuer outage while the token is valid changes nothing; past expiry the tool fails closed with 503', async (t) => {
  // A one-hour token leaves far more fake time than the three outage steps can use (each ends by the 120 s backoff cap).
  const lifetimeMs = 3_600_000
  const issuer = await idp(t, lifetimeMs / 1000)
  const up = await startRawUpstream()
  t.teardown(() => up.close())
  const clock = new FakeClock(Date.now())
  const sk = await startSidekey(t, `
instance_id: agent-e1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { idp: { type: oauth2_client_credentials, token_url: ${issuer.url}, client_id: a, client_secret: s } }
tools: { api: { match: { host: api.tool.test, port: ${up.port} }, issuer: idp, plaintext: true } }
`, { clock })
  const get = async (): Promise<{ status: number | undefined, auth: string | undefined, text: string }> => {
    const before = up.requests.length
    const r = await raw(sk.proxyPort, `GET http://api.tool.test:${up.port}/ HTTP/1.1\r\nHost: api.tool.test\r\n\r\n`, { until: completeResponse })
    return { status: r.status, auth: up.requests.length > before ? headerValues(up.requests.at(-1)!, 'authorization')[0] : undefined, text: r.text }
  }
  const failures = (): number => sk.log.events('credential.refresh_failed').length
  const issuedAt = clock.now()
  const first = await get()
  t.equal(first.status, 200)
  // The scheduled refresh (half the lifetime, ±10 %) and its retries meet a 500, a 429, then a dead socket.
  const steps: Array<[Mode, number]> = [['error500', lifetimeMs * 0.56], ['error429', 5_000], ['down', 10_000]]
  for (const [mode, ms] of steps) {
    issuer.set(mode)
    const failedBefore = failures()
    await clock.advance(ms)
    // The issuer call is real I/O: give it real time to land, and move fake time on (past the next backoff retry)
    // only while nothing has failed yet. Bounded by a real-time deadline, not by a count that a slow machine beats.
    const deadline = Date.now() + 30_000
    while (failures() === failedBefore && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      if (failures() === failedBefore) await clock.advance(1_000)
    }
    t.ok(failures() > failedBefore, `${mode}: the failure is audited`)
    t.ok(clock.now() < issuedAt + lifetimeMs - 30_000, `${mode}: the token is still valid (test budget)`)
    const r = await get()
    t.equal(r.status, 200, `${mode}: still served`)
    t.equal(r.auth, first.auth, `${mode}: with the cached token`)
  }
  // Past expiry (less the 30 s skew margin): no token, so no request goes out.
  await clock.advance(issuedAt + lifetimeMs - 30_000 - clock.now() + 1)
  const before = up.requests.length
  const closed = await get()
  t.equal(closed.status, 503)
  t.match(closed.text, /\r\nretry-after: \d+\r\n/i)
  t.match(closed.text, /"error":"credential_unavailable"/)
  t.equal(up.requests.length, before, 'nothing was sent without a credential')
  // The issuer comes back: the next retry (at most the 120 s cap away) fetches, and the tool is served again.
  issuer.set('ok')
  const issuedBefore = sk.log.events('credential.issued').length
  await clock.advance(130_000)
  await until(() => sk.log.events('credential.issued').length > issuedBefore, 'the fetch (real I/O) to land', 30_000)
  t.equal((await get()).status, 200)
})

t.test('an upstream 401 triggers at most one forced refresh and one replay; no refresh loop', async (t) => {
  const issuer = await idp(t, 3600)
  const up = await startRawUpstream((_req, socket) => socket.write('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n'))
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: agent-e7
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { idp: { type: oauth2_client_credentials, token_url: ${issuer.url}, client_id: a, client_secret: s } }
tools: { api: { match: { host: api.tool.test, port: ${up.port} }, issuer: idp, plaintext: true } }
`)
  const send = (): Promise<number | undefined> => raw(sk.proxyPort, `GET http://api.tool.test:${up.port}/ HTTP/1.1\r\nHost: api.tool.test\r\n\r\n`, { until: completeResponse }).then((r) => r.status)
  const fetchesBefore = issuer.calls()
  const sentBefore = up.requests.length
  const statuses = await Promise.all(Array.from({ length: 5 }, send))
  t.same(statuses, [401, 401, 401, 401, 401], 'the 401 is passed through')
  t.equal(issuer.calls() - fetchesBefore, 1, 'five concurrent 401s: one forced refresh (single-flight)')
  t.ok(up.requests.length - sentBefore <= 10, `each request replayed at most once (${up.requests.length - sentBefore} sent for 5)`)
  // One at a time: each request forces at most one refresh and replays at most once, whatever the upstream says.
  for (let i = 0; i < 5; i++) {
    const fetches = issuer.calls()
    const sent = up.requests.length
    t.equal(await send(), 401)
    t.ok(issuer.calls() - fetches <= 1, 'at most one forced refresh for this request')
    t.ok(up.requests.length - sent <= 2, 'at most one replay for this request')
  }
  const admin = new Agent()
  t.teardown(() => admin.close())
  const status = await request(`${sk.adminUrl}/status`, { dispatcher: admin })
  t.equal(status.statusCode, 200)
  await status.body.dump()
})
