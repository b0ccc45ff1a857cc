import t, { type Test } from 'tap'
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { adminPost, LogCapture, startSidekey } from '../helpers/sidekey.js'
import { ManualClock } from '../audit/helpers.js'
import { Sidekey } from '../../src/app.js'
import { createLogger } from '../../src/audit/log.js'

/**
 * The shipped configs set no `admin.token_file`, and the admin port is on loopback, which the agent shares under
 * compose (docs/threat-model.md, "The agent"): its writes must still need a token, and rotations must not mint
 * credentials on demand.
 */

/** A real OAuth2 token endpoint that counts the issuer calls sidekey makes. */
async function countingIdp (t: Test): Promise<{ url: string, calls: () => number }> {
  let calls = 0
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      calls++
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end(JSON.stringify({ access_token: `tok-${calls}`, token_type: 'Bearer', expires_in: 3600 }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://idp.tool.test:${(server.address() as AddressInfo).port}/token`, calls: () => calls }
}

const up = await startUpstream()
t.teardown(() => up.close())
const idp = await countingIdp(t)
const clock = new ManualClock(Date.now())
// As shipped: no admin section at all.
const config = (caDir: string): string => `
instance_id: admin-token-test
ca: { dir: ${caDir} }
resolve: { api.tool.test: 127.0.0.1, other.tool.test: 127.0.0.1, idp.tool.test: 127.0.0.1 }
issuers: { idp: { type: oauth2_client_credentials, token_url: "${idp.url}", client_id: c, auth_method: none } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: idp, scopes: [read], plaintext: true }
  other: { match: { host: other.tool.test, port: ${up.port} }, issuer: idp, scopes: [read], plaintext: true }
`
const sk = await startSidekey(t, config('{{CA_DIR}}'), { clock })
const tokenPath = join(sk.caDir, 'admin-token')
const token = readFileSync(tokenPath, 'utf8').trim()
const post = async (path: string, authorization?: string): Promise<{ status: number, headers: Record<string, unknown>, body: Record<string, unknown> }> => {
  const r = await request(`${sk.adminUrl}${path}`, { method: 'POST', headers: authorization === undefined ? {} : { authorization } })
  return { status: r.statusCode, headers: r.headers, body: await r.body.json() as Record<string, unknown> }
}
/** sidekey started from a config file (as `sidekey run` does), so that a reload re-reads it. */
const startFrom = (file: string): Promise<Sidekey> =>
  Sidekey.start({ configFile: file, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: createLogger({ level: 'info', destination: new LogCapture() }), env: {} })
const credentialOf = async (tool: string): Promise<string> =>
  ((await (await request(`${sk.adminUrl}/status`)).body.json()) as { tools: Record<string, { credential_id: string }> }).tools[tool]!.credential_id

t.test('no token_file: sidekey makes one beside the CA, 0600, 32 random bytes base64url; the start log names its path only', async (t) => {
  t.equal(statSync(tokenPath).mode & 0o777, 0o600)
  t.match(readFileSync(tokenPath, 'utf8'), /^[A-Za-z0-9_-]{43}\n$/)
  const listening = sk.log.lines.find((l) => l.msg === 'listening')
  t.equal(listening?.admin_token, tokenPath)
})

t.test('without the token, POST /rotate and /reload are 401, audited as admin.denied (rate-limited lines, every one counted), and the issuer is not called', async (t) => {
  const calls = idp.calls()
  const issued = sk.log.events('credential.issued').length
  const before = await credentialOf('api')
  const asked = [
    ['/rotate/api?revoke=previous', undefined], ['/rotate/api', 'Bearer wrong'], ['/rotate/api', `Basic ${token}`],
    ['/rotate/api', `Bearer ${token.slice(0, -1)}`], ['/reload', undefined], ['/rotate/nope', undefined], ['/anything', undefined],
  ] as const
  // The probe that found the hole sent 100 rotations; so does this.
  for (let i = 0; i < 100; i++) {
    const [path, authorization] = asked[i % asked.length]!
    const r = await post(path, authorization)
    t.equal(r.status, 401, path)
    t.same(r.body, { error: 'unauthorized' })
    t.equal(r.headers['www-authenticate'], 'Bearer realm="sidekey-admin"')
  }
  t.equal(idp.calls(), calls, 'the issuer was not called')
  t.equal(sk.log.events('credential.issued').length, issued, 'no credential was issued')
  t.equal(await credentialOf('api'), before, 'the credential in force is the same')
  // A token guesser cannot flood the log: 10 lines a minute per route and reason; the metric counts every one.
  const denied = sk.log.events('admin.denied')
  t.equal(denied.length, 30, '10 lines for each of /rotate, /reload and other')
  const metrics = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  t.match(metrics, 'sidekey_admin_denied_total{reason="unauthorized"} 100')
  t.match(denied[0], { route: '/rotate', tool: 'api', reason: 'unauthorized', client: /^127\.0\.0\.1:\d+$/ })
  t.ok(denied.some((e) => e.route === '/reload' && !('tool' in e)))
  t.ok(denied.some((e) => e.route === '/rotate' && !('tool' in e)), 'an unknown tool name is not logged')
  t.ok(denied.some((e) => e.route === 'other'))
  t.notOk(sk.log.text.includes('wrong') || sk.log.text.includes('/anything') || sk.log.text.includes('nope'), 'nothing the caller sent is logged')
})

t.test('with the generated token: 200; a second rotation of the credential within 10 s is 429 with Retry-After', async (t) => {
  const calls = idp.calls()
  const rotated = await adminPost(sk.app, '/rotate/api')
  t.equal(rotated.statusCode, 200)
  t.match(await rotated.body.json(), { tool: 'api', credential_id: String })
  t.equal(idp.calls(), calls + 1, 'one issuer call')
  for (const tool of ['api', 'other']) {
    const again = await post(`/rotate/${tool}?revoke=previous`, `Bearer ${token}`)
    t.equal(again.status, 429, `${tool}: the tools share one credential, and its limit`)
    t.equal(again.headers['retry-after'], '10')
    t.same(again.body, { error: 'rotate_rate_limited', tool, retry_after: 10 })
  }
  t.equal(idp.calls(), calls + 1, 'a refused rotation calls no issuer')
  t.match(sk.log.events('admin.denied').at(-1), { route: '/rotate', tool: 'other', reason: 'rate_limited', retry_after_s: 10 })
  clock.advance(9_500)
  const late = await post('/rotate/api', `Bearer ${token}`)
  t.equal(late.status, 429)
  t.equal(late.headers['retry-after'], '1', 'whole seconds, rounded up')
  clock.advance(500)
  t.equal((await post('/rotate/other', `Bearer ${token}`)).status, 200, '10 s after the last one it is allowed again')
  const reloaded = await adminPost(sk.app, '/reload')
  t.equal(reloaded.statusCode, 200)
  await reloaded.body.dump()
})

t.test('the token never appears in logs, status, metrics or any admin answer', async (t) => {
  const answers: string[] = []
  for (const path of ['/status', '/metrics', '/readyz', '/healthz', '/.well-known/jwks.json', '/ca.pem', '/audit-key']) {
    answers.push(await (await request(`${sk.adminUrl}${path}`)).body.text())
  }
  for (const [where, text] of [['log', sk.log.text], ['admin answers', answers.join('\n')]] as const) {
    t.notOk(text.includes(token), `not in the ${where}`)
  }
})

t.test('the made token is reused by later starts and kept across reloads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-admin-token-'))
  const file = join(dir, 'sidekey.yaml')
  writeFileSync(file, config(join(dir, 'ca')))
  const first = await startFrom(file)
  const made = readFileSync(join(dir, 'ca', 'admin-token'), 'utf8')
  await first.close()
  const second = await startFrom(file)
  t.teardown(() => second.close())
  t.equal(readFileSync(join(dir, 'ca', 'admin-token'), 'utf8'), made, 'the file is not replaced')
  for (let i = 0; i < 2; i++) {
    const r = await request(`http://${second.adminAddress}/reload`, { method: 'POST', headers: { authorization: `Bearer ${made.trim()}` } })
    t.equal(r.statusCode, 200, `reload ${i + 1} with the first start's token`)
    await r.body.dump()
  }
})

t.test('a made token file others can read is refused at start, naming the fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-admin-token-'))
  const caDir = join(dir, 'ca')
  const file = join(dir, 'sidekey.yaml')
  writeFileSync(file, config(caDir))
  await (await startFrom(file)).close()
  chmodSync(join(caDir, 'admin-token'), 0o644)
  await t.rejects(startFrom(file),
    { name: 'SidekeyError', code: 'SIDEKEY_CONFIG_INVALID', message: /admin-token is accessible by group or others.*chmod 600/ })
})
