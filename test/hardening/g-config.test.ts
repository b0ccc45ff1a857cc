// Threat model, faults, bad config: bad configs never start, never leak, and never replace a good one; a dead issuer at
// start-up does not stop the proxy, it fails closed. (Each G1 case in isolation: test/config/.)
import t from 'tap'
import { createServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request, Agent } from 'undici'
import { adminPost, startSidekey } from '../helpers/sidekey.js'
import { ConfigError, formatProblems, loadConfigFile } from '../../src/config/load.js'
import { raw, startRawUpstream } from './helpers.js'
import { completeResponse } from './tunnel-client.js'
import { cli } from '../helpers/cli.js'

const SECRET = 'g1-secret-value-5b8e2a7c'

const admin = new Agent()
t.teardown(() => admin.close())
const adminGet = async (url: string): Promise<{ status: number, body: string }> => {
  const r = await request(url, { dispatcher: admin })
  return { status: r.statusCode, body: await r.body.text() }
}

t.test('every kind of bad config exits 2 before binding, one FILE:LINE:COL line per problem, no secret quoted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-g1-'))
  const write = (name: string, text: string): string => { const f = join(dir, name); writeFileSync(f, text); return f }
  const issuer = `issuers: { idp: { type: oauth2_client_credentials, token_url: "https://idp.test/token", client_id: a, client_secret: "${SECRET}" } }\n`
  const bad = write('bad.yaml', `instance_id: g1
listen: 127.0.0.1:99999
${issuer}tools:
  star: { match: { host: "*" }, issuer: idp }
  private: { match: { host: 10.0.0.7 }, issuer: idp }
  clear: { match: { host: clear.test }, issuer: idp, plaintext: true }
  dangling: { match: { host: dangling.test }, issuer: nowhere }
  dup-a: { match: { host: dup.test }, issuer: idp, scopes: [a] }
  dup-b: { match: { host: dup.test }, issuer: idp, scopes: [b] }
  badport: { match: { host: port.test, port: 70000 }, issuer: idp }
  typo: { match: { host: typo.test }, issuer: idp, injcet: { header: X } }
`)
  const yaml = write('broken.yaml', `instance_id: g1\n${issuer}tools: { a: { match: { host: "a.test" }, issuer: idp ]\n`)
  const json = write('broken.json', `{"instance_id": "g1", "client_secret": "${SECRET}", "tools": {`)
  const good = write('good.yaml', `instance_id: g1\n${issuer}tools: { a: { match: { host: a.test }, issuer: idp } }\n`)
  // The CLI for the verbs themselves; the other files through loadConfigFile, which is what `check` runs.
  const [check, run] = await Promise.all([
    cli(['check', '--config', bad]),
    cli(['run', '--config', bad, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']),
  ])
  const checkFile = async (file: string): Promise<{ code: number, stdout: string, stderr: string }> => {
    try {
      await loadConfigFile(file, {})
      return { code: 0, stdout: `${file}: ok\n`, stderr: '' }
    } catch (err) {
      return { code: err instanceof ConfigError ? 2 : 1, stdout: err instanceof ConfigError ? formatProblems(err.problems).join('\n') : '', stderr: String((err as Error).message) }
    }
  }
  const [checkYaml, checkJson, checkGood] = await Promise.all([checkFile(yaml), checkFile(json), checkFile(good)])
  t.equal(check.code, 2)
  const lines = check.stdout.trim().split('\n')
  t.ok(lines.every((l) => l.startsWith(`${bad}:`) && /^[^:]+:\d+:\d+: \S/.test(l)), check.stdout)
  for (const [what, pattern] of [['port', /:2:\d+: .*port/i], ['"*"', /:5:\d+: .*\*/], ['private address', /:6:\d+: /], ['plaintext', /:7:\d+: .*plaintext/],
    ['dangling issuer', /:8:\d+: .*issuer/], ['duplicate host', /:(9|10):\d+: .*dup/], ['tool port', /:11:\d+: .*port/], ['unknown key', /:12:\d+: .*injcet/]] as const) {
    t.match(check.stdout, pattern, what)
  }
  t.equal(run.code, 2, 'run refuses it too')
  t.notMatch(run.stdout + run.stderr, /listening/, 'nothing was bound')
  for (const r of [checkYaml, checkJson]) {
    t.equal(r.code, 2)
    t.match(r.stdout, /:\d+:\d+: /)
  }
  t.equal(checkGood.code, 0, checkGood.stdout + checkGood.stderr)
  t.notMatch([check, run, checkYaml, checkJson].map((r) => r.stdout + r.stderr).join('\n'), new RegExp(SECRET), 'no secret value in any message')
})

t.test('a reload with a bad config is refused and logged; the running config keeps serving', async (t) => {
  const up = await startRawUpstream()
  t.teardown(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-g2-'))
  const file = join(dir, 'sidekey.yaml')
  const config = (tool: string, extra = ''): string => `instance_id: g2
ca: { dir: ${join(dir, 'ca')} }
resolve: { ${tool}.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools: { ${tool}: { match: { host: ${tool}.tool.test, port: ${up.port} }, issuer: local, plaintext: true${extra} } }
`
  writeFileSync(file, config('one'))
  const sk = await startSidekey(t, config('one'), { configFile: file })
  const get = (tool: string): Promise<number | undefined> =>
    raw(sk.proxyPort, `GET http://${tool}.tool.test:${up.port}/ HTTP/1.1\r\nHost: ${tool}.tool.test\r\n\r\n`, { until: completeResponse }).then((r) => r.status)
  t.equal(await get('one'), 200)
  writeFileSync(file, config('two', `, client_secret: "${SECRET}"`))
  const refusedAnswer = await adminPost(sk.app, '/reload', { dispatcher: admin })
  const refused = { status: refusedAnswer.statusCode, body: await refusedAnswer.body.text() }
  t.equal(refused.status, 400)
  t.match(JSON.parse(refused.body), { error: 'config_invalid', problems: [/sidekey\.yaml:\d+:\d+: /] })
  t.equal(await get('one'), 200, 'the old config still serves')
  t.equal(await get('two'), 403, 'the refused one does not')
  t.ok(sk.log.lines.some((l) => /reload refused/.test(String(l.msg))), 'the refusal is logged')
  t.notMatch(sk.log.text + refused.body, new RegExp(SECRET))
  writeFileSync(file, config('two'))
  const reloaded = await adminPost(sk.app, '/reload', { dispatcher: admin })
  await reloaded.body.dump()
  t.equal(reloaded.statusCode, 200)
  t.equal(await get('two'), 200, 'a good config is taken')
  t.equal(await get('one'), 403)
  // The CA was made for tool one (name constraints on by default, D6): tool two is warned about, its TLS fails closed.
  t.ok(sk.log.lines.some((l) => /outside the interception CA's name constraints/.test(String(l.msg)) && JSON.stringify(l.tools) === '["two"]'), 'the reload warns about a tool the CA cannot cover')
})

t.test('started while the issuer is unreachable: the proxy serves, the tool fails closed, readiness says so, and it heals', async (t) => {
  const up = await startRawUpstream()
  t.teardown(() => up.close())
  // A port with nothing behind it yet; the issuer will appear there later.
  const probe = createNetServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const idpPort = (probe.address() as AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  const sk = await startSidekey(t, `
instance_id: g3
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { idp: { type: oauth2_client_credentials, token_url: "http://127.0.0.1:${idpPort}/token", client_id: a, client_secret: s } }
tools: { api: { match: { host: api.tool.test, port: ${up.port} }, issuer: idp, plaintext: true } }
`)
  const get = (): Promise<Awaited<ReturnType<typeof raw>>> =>
    raw(sk.proxyPort, `GET http://api.tool.test:${up.port}/ HTTP/1.1\r\nHost: api.tool.test\r\nAuthorization: Bearer sidekey\r\n\r\n`, { until: completeResponse })
  const denied = await get()
  t.equal(denied.status, 503, 'fail closed')
  t.equal(up.connections, 0, 'nothing sent without a credential')
  t.equal((await adminGet(`${sk.adminUrl}/healthz`)).status, 200, 'the process is healthy')
  const ready = await adminGet(`${sk.adminUrl}/readyz`)
  t.equal(ready.status, 503, 'but not ready')
  t.match(ready.body, /api/)
  const idp = createServer((req, res) => {
    req.resume()
    req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"access_token":"tok-g3","token_type":"Bearer","expires_in":3600}') })
  })
  await new Promise<void>((resolve) => idp.listen(idpPort, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { idp.closeAllConnections(); idp.close(resolve) }))
  const rotated = await adminPost(sk.app, '/rotate/api', { dispatcher: admin })
  await rotated.body.dump()
  t.equal(rotated.statusCode, 200, 'a token arrives')
  t.equal((await get()).status, 200)
  t.equal((await adminGet(`${sk.adminUrl}/readyz`)).status, 200)
})
