import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request, ProxyAgent } from 'undici'
import { decodeJwt } from 'jose'
import { echo, startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { until } from '../helpers/until.js'

/**
 * Issue 3 through the running proxy: rotations under steady load, an issuer outage ridden out until expiry then
 * 503 then recovery, and a 401 answered with one forced refresh and a replay.
 */

/** A token endpoint speaking RFC 6749 §5.1 whose behaviour the test switches: ok, or failing with 500. */
async function tokenEndpoint (t: Test, expiresIn: number) {
  const state = { failing: false, calls: 0, issued: [] as string[] }
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      state.calls++
      if (state.failing) {
        res.writeHead(500, { 'content-type': 'application/json' })
        res.end('{"error":"server_error"}')
        return
      }
      const token = `tok-${state.calls}-${Math.random().toString(36).slice(2)}`
      state.issued.push(token)
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: expiresIn }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://idp.tool.test:${(server.address() as AddressInfo).port}/token`, state }
}

function proxied (proxyUrl: string): ProxyAgent {
  return new ProxyAgent({ uri: proxyUrl, proxyTunnel: false })
}

t.test('several local_jwt rotations under steady load: no request fails, every token the tool saw was valid', async (t) => {
  let expiredOnArrival = 0
  const up = await startUpstream({
    handler: (req, res, seen) => {
      const { exp } = decodeJwt(String(req.headers.authorization).slice(7))
      if ((exp ?? 0) * 1000 <= Date.now()) expiredOnArrival++
      echo(req, res, seen)
    },
  })
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: load-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt, ttl: 2s } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true, refresh: { at: 0.5, jitter: 0 } }
`)
  const agent = proxied(sk.proxyUrl)
  t.teardown(() => agent.close())
  const statuses = new Map<number, number>()
  const deadline = Date.now() + 6000
  // Steady load, bounded in count and time, four clients at once.
  await Promise.all([0, 1, 2, 3].map(async () => {
    for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
      const res = await request(`http://api.tool.test:${up.port}/work`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
      await res.body.dump()
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      await new Promise((resolve) => setTimeout(resolve, 5)) // paced: a steady load, not a flood
    }
  }))
  t.same([...statuses.keys()], [200], `every request succeeded (${statuses.get(200)} requests)`)
  const ids = new Set<string>()
  for (const seen of up.seen) {
    const claims = decodeJwt(String(seen.headers.authorization).slice(7))
    ids.add(String(claims.jti))
  }
  t.equal(expiredOnArrival, 0, 'no token had expired when it reached the tool')
  t.ok(ids.size >= 4, `the tool saw ${ids.size} distinct credentials across the run`)
  const issued = sk.log.events('credential.issued').length
  // One issuer call per half-life: 6 s / 1 s ≈ 6, never one per request.
  t.ok(issued >= 4 && issued <= 12, `${issued} credentials issued for ${up.seen.length} requests`)
})

t.test('issuer outage: served until expiry, then 503 naming the tool with nothing sent upstream, then recovery', async (t) => {
  const up = await startUpstream()
  t.teardown(() => up.close())
  const idp = await tokenEndpoint(t, 3)
  const sk = await startSidekey(t, `
instance_id: outage-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1, idp.tool.test: 127.0.0.1 }
issuers:
  idp: { type: oauth2_client_credentials, token_url: "${idp.url}", client_id: fleet, client_secret: s3cret-client, auth_method: client_secret_post }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: idp, scopes: [read], plaintext: true }
`)
  const agent = proxied(sk.proxyUrl)
  t.teardown(() => agent.close())
  const call = async () => {
    const res = await request(`http://api.tool.test:${up.port}/x`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }
  t.equal((await call()).status, 200)
  idp.state.failing = true
  // Keep calling until the credential expires: every call before that is served with the cached token.
  let first503: Awaited<ReturnType<typeof call>> | undefined
  let servedDuringOutage = 0
  await until(async () => {
    const r = await call()
    if (r.status === 200) servedDuringOutage++
    else first503 = r
    return first503 !== undefined
  }, 'the cached credential to expire', 15_000).catch(() => {})
  t.ok(servedDuringOutage > 0, `${servedDuringOutage} calls served during the outage from the still-valid credential`)
  t.ok(first503, 'fails closed once the credential expired')
  t.equal(first503!.status, 503)
  t.match(JSON.parse(first503!.body), { error: 'credential_unavailable', tool: 'api' })
  t.match(first503!.headers['retry-after'], /^\d+$/)
  const upstreamCount = up.seen.length
  t.equal((await call()).status, 503)
  t.equal(up.seen.length, upstreamCount, 'nothing is sent upstream without a credential')
  t.ok(up.seen.every((s) => s.headers.authorization !== 'Bearer sidekey'), 'the placeholder never reached the tool')
  const ready = await request(`${sk.adminUrl}/readyz`)
  t.equal(ready.statusCode, 503)
  t.match(await ready.body.json(), { ready: false, tools: ['api'] })
  t.ok(sk.log.events('credential.refresh_failed').length > 0, 'failures are audited')
  t.ok(sk.log.events('credential.expired').some((e) => e.tool === 'api'))

  idp.state.failing = false
  const recoverStart = Date.now()
  let recovered = false
  await until(async () => {
    recovered = (await (await request(`${sk.adminUrl}/readyz`)).body.json() as { ready: boolean }).ready
    return recovered
  }, 'readyz to say ready', 10_000).catch(() => {})
  t.ok(recovered, `recovered by itself after ${Date.now() - recoverStart} ms`)
  t.equal((await call()).status, 200)
  t.notOk(sk.log.text.includes('s3cret-client'), 'the client secret is in no log line')
  for (const token of idp.state.issued) t.notOk(sk.log.text.includes(token), 'no issued token is in the log')
})

t.test('a 401 from the tool forces one refresh and replays the request with its body; no loop', async (t) => {
  let rejectAll = false
  const rejected = new Set<string>()
  const up = await startUpstream({
    handler: (req, res, seen) => {
      const auth = String(req.headers.authorization)
      if (rejectAll || rejected.size === 0) {
        rejected.add(auth)
        res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer error="invalid_token"' })
        res.end('revoked')
        return
      }
      res.writeHead(rejected.has(auth) ? 401 : 200, { 'content-type': 'text/plain' })
      res.end(`got ${seen.body.length} bytes`)
    },
  })
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: replay-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt, ttl: 10m } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true }
`)
  const agent = proxied(sk.proxyUrl)
  t.teardown(() => agent.close())
  const body = JSON.stringify({ prompt: 'x'.repeat(1000) })
  const res = await request(`http://api.tool.test:${up.port}/v1/chat`, { method: 'POST', dispatcher: agent, body, headers: { 'content-type': 'application/json', authorization: 'Bearer sidekey' } })
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), `got ${body.length} bytes`)
  t.equal(up.seen.length, 2, 'the tool saw the original and one replay')
  t.not(up.seen[0]!.headers.authorization, up.seen[1]!.headers.authorization, 'the replay carries a new credential')
  t.equal(up.seen[1]!.body.toString(), body, 'the replay carries the same body')
  const used = sk.log.events('credential.used')
  t.match(used.at(-1), { status: 200, replayed: true })
  t.equal(sk.log.events('credential.issued').filter((e) => e.reason === 'rejected').length, 1)

  // A tool that rejects every credential: the 401 passes through, and within the cooldown after the forced
  // refresh no further issuer call is made, however many requests come.
  rejectAll = true
  const before = up.seen.length
  for (let i = 0; i < 5; i++) {
    const again = await request(`http://api.tool.test:${up.port}/v1/chat`, { method: 'POST', dispatcher: agent, body, headers: { authorization: 'Bearer sidekey' } })
    t.equal(again.statusCode, 401)
    t.equal(await again.body.text(), 'revoked', 'the upstream answer is passed through')
  }
  t.equal(up.seen.length - before, 5, 'no replay loop: one upstream request per agent request')
  t.equal(sk.log.events('credential.issued').filter((e) => e.reason === 'rejected').length, 1, 'no issuer call per request')
})

t.test('a 401 to a request whose body was too large to keep: passed through, not replayed, and the credential is still refreshed', async (t) => {
  const seenAuth: string[] = []
  const up = await startUpstream({
    handler: (req, res) => {
      seenAuth.push(String(req.headers.authorization))
      res.writeHead(seenAuth.length === 1 ? 401 : 200, { 'content-type': 'text/plain' })
      res.end(seenAuth.length === 1 ? 'revoked' : 'ok')
    },
  })
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: replay-2
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
limits: { replay_body_bytes: 1024 }
issuers: { local: { type: local_jwt, ttl: 10m } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true }
`)
  const agent = proxied(sk.proxyUrl)
  t.teardown(() => agent.close())
  const big = 'x'.repeat(64 * 1024)
  const res = await request(`http://api.tool.test:${up.port}/v1/upload`, { method: 'POST', dispatcher: agent, body: big, headers: { authorization: 'Bearer sidekey' } })
  t.equal(res.statusCode, 401)
  t.equal(await res.body.text(), 'revoked', 'the upstream answer is passed through')
  t.equal(seenAuth.length, 1, 'not replayed: the body was streamed')
  await until(() => sk.log.events('credential.issued').some((e) => e.reason === 'rejected'), 'the forced refresh')
  t.equal(sk.log.events('credential.issued').filter((e) => e.reason === 'rejected').length, 1, 'the rejected credential was refreshed')
  const next = await request(`http://api.tool.test:${up.port}/v1/upload`, { method: 'POST', dispatcher: agent, body: big, headers: { authorization: 'Bearer sidekey' } })
  t.equal(next.statusCode, 200)
  await next.body.dump()
  t.not(seenAuth[1], seenAuth[0], 'the next call carries the new credential')
})
