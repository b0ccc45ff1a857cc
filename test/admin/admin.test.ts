import t from 'tap'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { adminPost, startSidekey } from '../helpers/sidekey.js'

const up = await startUpstream()
t.teardown(() => up.close())
const dir = mkdtempSync(join(tmpdir(), 'sidekey-admin-'))
const tokenFile = join(dir, 'admin-token')
writeFileSync(tokenFile, 'admin-s3cret\n', { mode: 0o600 })

const yaml = `
instance_id: admin-test
admin: { token_file: ${tokenFile} }
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1, other.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt, ttl: 10m } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, scopes: [read], plaintext: true }
  other: { match: { host: other.tool.test, port: ${up.port} }, issuer: local, scopes: [read], plaintext: true }
`
const sk = await startSidekey(t, yaml)
const admin = (path: string, init: Parameters<typeof request>[1] = {}) => request(`${sk.adminUrl}${path}`, init)

t.test('healthz, readyz, status: per tool issuer and credential facts, never the credential', async (t) => {
  t.equal((await admin('/healthz')).statusCode, 200)
  const ready = await admin('/readyz')
  t.equal(ready.statusCode, 200)
  t.same(await ready.body.json(), { ready: true })
  const res = await admin('/status')
  const status = await res.body.json() as { tools: Record<string, Record<string, unknown>> }
  t.same(Object.keys(status.tools).sort(), ['api', 'other'])
  t.match(status.tools.api, { issuer: 'local', credential_id: String, issued_at: String, expires_at: String, age_seconds: Number, last_refresh: { result: 'success', at: String } })
  t.same(status.tools.api!.shared_with, ['other'], 'same issuer, scopes and audience share one credential')
  t.equal(status.tools.api!.credential_id, status.tools.other!.credential_id)
})

t.test('a configured token_file: POST routes need its token (401 otherwise); rotate issues a new credential, revoke=previous drops the old', async (t) => {
  const denied = await admin('/rotate/api', { method: 'POST' })
  t.equal(denied.statusCode, 401)
  await denied.body.dump()
  const wrong = await admin('/rotate/api', { method: 'POST', headers: { authorization: 'Bearer nope' } })
  t.equal(wrong.statusCode, 401)
  await wrong.body.dump()
  const before = (await (await admin('/status')).body.json() as { tools: Record<string, { credential_id: string }> }).tools.api!.credential_id
  const rotated = await adminPost(sk.app, '/rotate/api?revoke=previous')
  t.equal(rotated.statusCode, 200)
  const body = await rotated.body.json() as { credential_id: string }
  t.not(body.credential_id, before)
  t.ok(sk.log.events('credential.issued').some((e) => e.credential_id === body.credential_id && e.reason === 'rotate'))
  t.ok(sk.log.events('credential.revoked').some((e) => e.credential_id === before), 'the previous credential is revoked')
  const unknown = await adminPost(sk.app, '/rotate/nope')
  t.equal(unknown.statusCode, 404)
  t.match(await unknown.body.json(), { error: 'unknown_tool' })
  t.notOk(sk.log.text.includes('admin-s3cret'), 'the admin token is never logged')
  t.equal(sk.log.lines.find((l) => l.msg === 'listening')?.admin_token, tokenFile, 'the start log names the file in force')
  t.notOk(existsSync(join(sk.caDir, 'admin-token')), 'no token is made beside the CA')
})

t.test('metrics: the documented series in Prometheus text format', async (t) => {
  const res = await request(`http://api.tool.test:${up.port}/m`, { dispatcher: new (await import('undici')).ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false }) })
  await res.body.dump()
  const metrics = await (await admin('/metrics')).body.text()
  for (const name of ['sidekey_requests_total', 'sidekey_request_duration_seconds_bucket', 'sidekey_credential_age_seconds', 'sidekey_credential_expires_in_seconds',
    'sidekey_credential_refresh_total', 'sidekey_anomalies_total', 'sidekey_egress_denied_total', 'sidekey_egress_denied_by_reason_total',
    'process_cpu_seconds_total']) {
    t.match(metrics, new RegExp(`^${name}`, 'm'), name)
  }
  t.match(metrics, /sidekey_requests_total\{tool="api",method="GET",code="200"\} 1/)
  t.match(metrics, /^sidekey_egress_denied_total \d+$/m, 'egress_denied_total has no labels, as documented')
})

t.test('JWKS and CA certificate are served; unknown routes 404; other methods 405', async (t) => {
  const jwks = await (await admin('/.well-known/jwks.json')).body.json() as { keys: Array<Record<string, unknown>> }
  t.ok(jwks.keys.length >= 1)
  for (const k of jwks.keys) t.notOk('d' in k, 'public keys only')
  const ca = await (await admin('/ca.pem')).body.text()
  t.match(ca, /^-----BEGIN CERTIFICATE-----/)
  t.notMatch(ca, /PRIVATE KEY/)
  const nf = await admin('/nope')
  t.equal(nf.statusCode, 404)
  await nf.body.dump()
  const m = await admin('/status', { method: 'DELETE' })
  t.equal(m.statusCode, 405)
  await m.body.dump()
})

t.test('reload: a good config swaps in, a bad one is refused with FILE:LINE:COL and the old keeps serving', async (t) => {
  const file = join(dir, 'sidekey.yaml')
  const caDir = join(dir, 'ca')
  writeFileSync(file, yaml.replaceAll('{{CA_DIR}}', caDir))
  const { Sidekey } = await import('../../src/app.js')
  const { createLogger } = await import('../../src/audit/log.js')
  const { LogCapture } = await import('../helpers/sidekey.js')
  const log = new LogCapture()
  const app = await Sidekey.start({ configFile: file, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: createLogger({ level: 'info', destination: log }), env: {} })
  t.teardown(() => app.close())
  const post = (path: string) => adminPost(app, path)
  writeFileSync(file, yaml.replaceAll('{{CA_DIR}}', caDir).replace('  other:', '  third: { match: { host: third.tool.test, port: 443 }, issuer: local }\n  other:'))
  const ok = await post('/reload')
  t.equal(ok.statusCode, 200)
  await ok.body.dump()
  t.ok('third' in app.credentials.status(), 'the new tool is live')
  writeFileSync(file, yaml.replaceAll('{{CA_DIR}}', caDir).replace('issuer: local, scopes', 'issuer: missing, scopes'))
  const bad = await post('/reload')
  t.equal(bad.statusCode, 400)
  const body = await bad.body.json() as { problems: string[] }
  t.match(body.problems[0], new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: tools\\.api\\.issuer`))
  t.ok('third' in app.credentials.status(), 'the running config stays in force')
  t.ok(log.lines.some((l) => l.level === 50 && String(l.msg).includes('reload refused')))
})
