import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import { request, ProxyAgent } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { connectTunnel } from '../helpers/connect.js'

/** `egress.unmatched: tunnel` for absolute-form http: untouched, no credential, and only to allowed ports. */
const up = await startUpstream()
const other = await startUpstream()
t.teardown(() => up.close())
t.teardown(() => other.close())
// A port nothing listens on: taken, then released.
const deadPort = await new Promise<number>((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) })
})
const sk = await startSidekey(t, `
instance_id: pass-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1, free.tool.test: 127.0.0.1 }
egress: { unmatched: tunnel, block_private: false, connect_ports: [443, ${up.port}, ${deadPort}] }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.tool.test, port: 8443 }, issuer: local }
`)
const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
t.teardown(() => agent.close())

t.test('an unmatched destination on an allowed port is passed through untouched, without a credential', async (t) => {
  const res = await request(`http://free.tool.test:${up.port}/open`, { dispatcher: agent, headers: { authorization: 'Bearer agent-own' } })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  t.equal(up.seen.at(-1)?.headers.authorization, 'Bearer agent-own', 'no credential is injected or stripped')
  const passed = sk.log.events('egress.passed').find((e) => e.path === '/open')
  t.match(passed, { host: 'free.tool.test', port: up.port, method: 'GET', status: 200, request_id: String, client: /^127\.0\.0\.1:\d+$/ }, 'the pass is audited')
  t.notOk(sk.log.text.includes('agent-own'), "the agent's own header is not logged")
})

t.test('a pass-through whose upstream is down is 502 and audited with the error code', async (t) => {
  const res = await request(`http://free.tool.test:${deadPort}/down`, { dispatcher: agent })
  t.equal(res.statusCode, 502)
  await res.body.dump()
  t.match(sk.log.events('egress.passed').find((e) => e.path === '/down'), { port: deadPort, status: 502, error: /^SIDEKEY_UPSTREAM_FAILED:/ })
})

t.test('a blind CONNECT tunnel is audited once it is up (method CONNECT, status 200)', async (t) => {
  const socket = await connectTunnel(sk.proxyPort, `free.tool.test:${up.port}`)
  t.teardown(() => socket.destroy())
  t.ok(sk.log.events('egress.passed').some((e) => e.method === 'CONNECT' && e.host === 'free.tool.test' && e.port === up.port && e.status === 200))
})

t.test('another port is refused (403, audited with reason port) and reaches nothing', async (t) => {
  const res = await request(`http://free.tool.test:${other.port}/closed`, { dispatcher: agent })
  t.equal(res.statusCode, 403)
  t.match(await res.body.json(), { error: 'egress_denied', reason: 'port' })
  t.equal(other.seen.length, 0)
  t.ok(sk.log.events('egress.denied').some((e) => e.port === other.port && e.reason === 'port'))
})

t.test("sidekey's own port is refused with reason self, even with block_private off", async (t) => {
  const res = await request(`http://127.0.0.1:${sk.proxyPort}/`, { dispatcher: agent })
  t.equal(res.statusCode, 403)
  await res.body.dump()
  t.ok(sk.log.events('egress.denied').some((e) => e.port === sk.proxyPort && (e.reason === 'self' || e.reason === 'port')))
})
