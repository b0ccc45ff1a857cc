import t, { type Test } from 'tap'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request, ProxyAgent } from 'undici'
import { decodeJwt } from 'jose'
import { echo, startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { until } from '../helpers/until.js'

/** `refresh.max_uses`: after N calls on one credential a refresh starts in the background; nothing waits on it. */

/** A token endpoint that answers at once, or holds every request until the test releases it. */
async function heldTokenEndpoint (t: Test) {
  const state = { hold: false, calls: 0, held: [] as ServerResponse[], arrived: undefined as (() => void) | undefined }
  const answer = (res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    res.end(JSON.stringify({ access_token: `tok-${state.calls}`, token_type: 'Bearer', expires_in: 3600 }))
  }
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      state.calls++
      if (!state.hold) { answer(res); return }
      state.held.push(res)
      state.arrived?.()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return {
    url: `http://idp.tool.test:${(server.address() as AddressInfo).port}/token`,
    state,
    /** Resolves once a refresh is held here (at once if one already is). */
    refreshHeld: (): Promise<void> => state.held.length > 0 ? Promise.resolve() : new Promise((resolve) => { state.arrived = resolve }),
    release: (): void => { for (const res of state.held.splice(0)) answer(res) },
  }
}

t.test('max_uses: 5 over a slot two tools share: ten calls, exactly two background refreshes, no call waits on one', async (t) => {
  const idp = await heldTokenEndpoint(t)
  /** For every call the tool saw: the token it carried and how many refreshes were held at the issuer meanwhile. */
  const calls: Array<{ token: string, refreshesInFlight: number }> = []
  const up = await startUpstream({
    handler: (req, res, seen) => {
      calls.push({ token: String(req.headers.authorization).slice(7), refreshesInFlight: idp.state.held.length })
      echo(req, res, seen)
    },
  })
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: uses-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1, idp.tool.test: 127.0.0.1 }
issuers:
  idp: { type: oauth2_client_credentials, token_url: "${idp.url}", client_id: fleet, auth_method: none }
tools:
  a: { match: { host: api.tool.test, port: ${up.port}, path_prefix: /a }, issuer: idp, scopes: [read], plaintext: true, refresh: { max_uses: 5 } }
  b: { match: { host: api.tool.test, port: ${up.port}, path_prefix: /b }, issuer: idp, scopes: [read], plaintext: true }
`)
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => agent.close())
  const call = async (n: number): Promise<void> => {
    const res = await request(`http://api.tool.test:${up.port}/${n % 2 === 1 ? 'a' : 'b'}/${n}`, { dispatcher: agent })
    await res.body.dump()
    t.equal(res.statusCode, 200, `call ${n} answered`)
  }
  const refreshes = (): Array<Record<string, unknown>> => sk.log.events('credential.issued').filter((e) => e.reason === 'max_uses')
  t.equal(idp.state.calls, 1, 'the initial fetch')
  idp.state.hold = true

  for (const round of [1, 2]) {
    for (let n = round * 5 - 4; n <= round * 5; n++) await call(n)
    // The fifth call was answered while its refresh had not even been answered by the issuer: it did not wait.
    await idp.refreshHeld()
    t.equal(idp.state.held.length, 1, `round ${round}: one refresh in flight after the fifth call on the credential`)
    t.equal(refreshes().length, round - 1, 'not yet in place')
    idp.release()
    await until(() => refreshes().length === round)
  }
  t.equal(idp.state.calls, 3, 'ten calls: the initial fetch and exactly two refreshes')
  t.match(refreshes(), [{ tool: 'a', shared_with: ['b'], credential_id: String }, { tool: 'a' }])
  t.same(calls.map((c) => c.token), [...Array(5).fill('tok-1'), ...Array(5).fill('tok-2')], 'each credential served exactly five calls, across both tools')

  // With the next refresh held, the credential it replaces keeps serving: calls go through, none waits.
  idp.state.hold = true
  for (let n = 11; n <= 15; n++) await call(n)
  await idp.refreshHeld()
  await call(16)
  await call(17)
  t.same(calls.slice(-2), [{ token: 'tok-3', refreshesInFlight: 1 }, { token: 'tok-3', refreshesInFlight: 1 }], 'served by the old credential while the refresh is in flight')
  idp.release()
  await until(() => refreshes().length === 3)
  await call(18)
  t.equal(calls.at(-1)!.token, 'tok-4', 'then by the new one')
  t.equal(idp.state.calls, 4, 'one refresh per five uses, however many calls arrived while it ran')
})

t.test('max_uses works for local_jwt too: every third call gets a new token', async (t) => {
  const up = await startUpstream()
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: uses-2
ca: { dir: {{CA_DIR}} }
resolve: { jwt.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  jwt: { match: { host: jwt.tool.test, port: ${up.port} }, issuer: local, plaintext: true, refresh: { max_uses: 3 } }
`)
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => agent.close())
  for (let n = 1; n <= 9; n++) {
    const res = await request(`http://jwt.tool.test:${up.port}/${n}`, { dispatcher: agent })
    await res.body.dump()
    // Wait for the refresh a third call started, so the next call's credential is known.
    if (n % 3 === 0) await until(() => sk.log.events('credential.issued').filter((e) => e.reason === 'max_uses').length === n / 3)
  }
  const jtis = up.seen.map((s) => String(decodeJwt(String(s.headers.authorization).slice(7)).jti))
  t.equal(new Set(jtis).size, 3)
  t.same(jtis.slice(0, 3), Array(3).fill(jtis[0]))
  t.same(jtis.slice(3, 6), Array(3).fill(jtis[3]))
})
