import t from 'tap'
import { request, ProxyAgent } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'

/** Issue 4 through the running proxy: detectors fire on real traffic and stay quiet on normal traffic. */
// A tool that answers like an API, without quoting the credential back (an echo is an anomaly of its own).
const up = await startUpstream({
  handler: (_req, res, seen) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ method: seen.method, url: seen.url }))
  },
})
t.teardown(() => up.close())
const sk = await startSidekey(t, `
instance_id: anomaly-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1, open.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port}, methods: [GET] }, issuer: local, plaintext: true, placeholder: sidekey }
  open: { match: { host: open.tool.test, port: ${up.port} }, issuer: local, plaintext: true }
`)
const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
t.teardown(() => agent.close())
const call = async (url: string, init: { method?: string, headers?: Record<string, string> } = {}): Promise<number> => {
  const res = await request(url, { dispatcher: agent, ...init })
  await res.body.dump()
  return res.statusCode
}
const anomalies = async (): Promise<Array<Record<string, unknown>>> => {
  await sk.app.audit.settled()
  return sk.log.events('anomaly')
}

t.test('normal traffic raises nothing', async (t) => {
  for (let i = 0; i < 5; i++) t.equal(await call(`http://api.tool.test:${up.port}/v1/items/${i}`, { headers: { authorization: 'Bearer sidekey' } }), 200)
  t.same(await anomalies(), [])
})

t.test('a real key where the placeholder belongs: unexpected_credential, and the key is stripped and never logged', async (t) => {
  const leaked = 'sk-proj-' + 'A1b2C3d4E5f6G7h8I9j0'.repeat(2)
  t.equal(await call(`http://api.tool.test:${up.port}/v1/items/9`, { headers: { authorization: `Bearer ${leaked}` } }), 200)
  t.not(up.seen.at(-1)!.headers.authorization, `Bearer ${leaked}`, 'the tool got sidekey\'s credential instead')
  t.ok((await anomalies()).some((a) => a.kind === 'unexpected_credential' && a.tool === 'api'))
  t.match(sk.log.events('credential.used').at(-1), { placeholder: 'unexpected' })
  t.notOk(sk.log.text.includes(leaked), 'the leaked key is in no log line')
  // Without a placeholder configured, a key-shaped value is flagged; an innocent one is not.
  t.equal(await call(`http://open.tool.test:${up.port}/x`, { headers: { authorization: 'Bearer ghp_' + 'x9Y8w7V6u5T4s3R2q1P0o9N8m7L6k5J4i3H2' } }), 200)
  t.equal(await call(`http://open.tool.test:${up.port}/x`, { headers: { authorization: 'Bearer placeholder' } }), 200)
  const forOpen = (await anomalies()).filter((a) => a.kind === 'unexpected_credential' && a.tool === 'open')
  t.equal(forOpen.length, 1)
})

t.test('method outside the tool\'s methods: 403, audited, method_denied anomaly', async (t) => {
  t.equal(await call(`http://api.tool.test:${up.port}/v1/items/1`, { method: 'DELETE', headers: { authorization: 'Bearer sidekey' } }), 403)
  t.ok((await anomalies()).some((a) => a.kind === 'method_denied' && a.tool === 'api'))
})

t.test('unmatched destination: 403 and an unmatched_destination anomaly', async (t) => {
  t.equal(await call(`http://nowhere.tool.test:${up.port}/`), 403)
  t.ok((await anomalies()).some((a) => a.kind === 'unmatched_destination'))
  const metrics = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  t.match(metrics, /sidekey_anomalies_total\{kind="unmatched_destination"\} [1-9]/)
  t.match(metrics, /^sidekey_egress_denied_total [1-9]/m)
  t.match(metrics, /sidekey_egress_denied_by_reason_total\{reason="no_tool"\} [1-9]/)
})
