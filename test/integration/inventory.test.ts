import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Writable, PassThrough } from 'node:stream'
import { request, ProxyAgent } from 'undici'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki, type Seen } from '../helpers/upstream.js'
import { systemBinary, needBinary } from '../helpers/system-binary.js'
import { cli } from '../helpers/cli.js'
import { inventoryCommand, type InventoryReport } from '../../src/reports/inventory-report.js'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { INVENTORY_KEY_FILE } from '../../src/inventory/key.js'

/**
 * Inventory mode, driven by curl, Python requests and undici (CONNECT and absolute-form) with real-looking keys in
 * headers, the query and basic auth: the upstreams get the agent's headers byte for byte, the trail records where
 * each credential sat and never its value, and the starter YAML it yields passes `sidekey check`.
 */
const run = promisify(execFile)
const curl = await systemBinary('curl', 'curl')
const python = await systemBinary('/usr/bin/python3', 'python3-requests')

const rnd = (n: number, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'): string =>
  [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('')
const KEYS = {
  openai: `sk-proj-${rnd(40)}`,
  github: `ghp_${rnd(36)}`,
  slack: `xoxb-${rnd(12, '0123456789')}-${rnd(24)}`,
  aws: `AKIA${rnd(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}`,
  google: `AIza${rnd(35)}`,
  jwt: `eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ${rnd(20)}.${rnd(43)}`,
  gitlab: `glpat-${rnd(20)}`,
  password: `pw-${rnd(28)}`,
}

const pki = await upstreamPki()
const secure = await startUpstream({ tls: await pki.cert('api.inv.test') })
const plain = await startUpstream()
t.teardown(() => secure.close())
t.teardown(() => plain.close())
const sk = await startSidekey(t, `
instance_id: inv-1
ca: { dir: {{CA_DIR}}, name_constraints: false }
upstream_ca_file: ${pki.caFile}
resolve: { api.inv.test: 127.0.0.1, plain.inv.test: 127.0.0.1 }
egress: { unmatched: inventory, block_private: false, connect_ports: [${secure.port}, ${plain.port}] }
issuers: { local: { type: local_jwt } }
tools: {}
`)
const caFile = join(sk.caDir, 'ca.pem')
const caPem = readFileSync(caFile, 'utf8')
const api = `https://api.inv.test:${secure.port}`
const http = `http://plain.inv.test:${plain.port}`

/**
 * The agent's headers arrive as sent: same names (same case), same values, in the same order. Over HTTP/2 (curl
 * negotiates it inside the tunnel) the agent's names are lower case on the wire, and so they arrive.
 */
function sameHeaders (t: Test, seen: Seen | undefined, sent: Array<[string, string]>, h2 = false): void {
  t.ok(seen, 'the upstream got the request')
  const raw = seen?.rawHeaders ?? []
  const got: Array<[string, string]> = []
  for (let i = 0; i < raw.length; i += 2) got.push([raw[i]!, raw[i + 1]!])
  const expected = h2 ? sent.map(([n, v]): [string, string] => [n.toLowerCase(), v]) : sent
  const names = new Set(expected.map(([n]) => n))
  t.same(got.filter(([n]) => names.has(n)), expected, 'byte for byte')
}

const last = (up: { seen: Seen[] }, path: string): Seen | undefined => up.seen.filter((s) => s.url.startsWith(path)).at(-1)

t.test('curl: CONNECT with a bearer key, a custom header and a query key; basic auth in absolute form', { skip: curl.skip }, async (t) => {
  if (!needBinary(t, curl)) return
  for (let i = 0; i < 2; i++) {
    const { stdout } = await run(curl.path!, ['-sS', '--fail', '-x', sk.proxyUrl, '--cacert', caFile, '-H', `Authorization: Bearer ${KEYS.openai}`,
      '-H', `X-Api-Key: ${KEYS.github}`, `${api}/v1/models/42?key=${KEYS.google}&q=1`])
    t.match(stdout, /"method":"GET"/)
  }
  sameHeaders(t, last(secure, '/v1/models/42'), [['Authorization', `Bearer ${KEYS.openai}`], ['X-Api-Key', KEYS.github]], true)
  await run(curl.path!, ['-sS', '--fail', '--http1.1', '-x', sk.proxyUrl, '--cacert', caFile, '-H', `Authorization: Bearer ${KEYS.openai}`, `${api}/v1/h1`])
  sameHeaders(t, last(secure, '/v1/h1'), [['Authorization', `Bearer ${KEYS.openai}`]])
  t.equal(last(secure, '/v1/models/42')?.url, `/v1/models/42?key=${KEYS.google}&q=1`, 'the query as sent')
  await run(curl.path!, ['-sS', '--fail', '-x', sk.proxyUrl, '-u', `svc:${KEYS.password}`, `${http}/basic`])
  sameHeaders(t, last(plain, '/basic'), [['Authorization', `Basic ${Buffer.from(`svc:${KEYS.password}`).toString('base64')}`]])
})

t.test('Python requests: CONNECT with a Slack token and a JWT in the query', { skip: python.skip }, async (t) => {
  if (!needBinary(t, python)) return
  const script = `import requests, sys
r = requests.get(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]}, params={'access_token': sys.argv[3]},
                 proxies={'https': sys.argv[4]}, verify=sys.argv[5], timeout=20)
print(r.status_code)`
  const { stdout } = await run(python.path!, ['-c', script, `${api}/api/chat.postMessage`, KEYS.slack, KEYS.jwt, sk.proxyUrl, caFile], { env: { PATH: process.env.PATH ?? '' } })
  t.equal(stdout.trim(), '200')
  sameHeaders(t, last(secure, '/api/chat.postMessage'), [['Authorization', `Bearer ${KEYS.slack}`]])
})

t.test('undici: CONNECT (token scheme, PRIVATE-TOKEN) and absolute form (x-api-key)', async (t) => {
  const tunnel = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: caPem } })
  const absolute = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => tunnel.close())
  t.teardown(() => absolute.close())
  const a = await request(`${api}/repos/acme/widget`, { dispatcher: tunnel, headers: { Authorization: `token ${KEYS.github}`, 'PRIVATE-TOKEN': KEYS.gitlab } })
  t.equal(a.statusCode, 200)
  await a.body.dump()
  sameHeaders(t, last(secure, '/repos/acme/widget'), [['Authorization', `token ${KEYS.github}`], ['PRIVATE-TOKEN', KEYS.gitlab]])
  const b = await request(`${http}/aws/object`, { dispatcher: absolute, headers: { 'x-api-key': KEYS.aws, accept: 'application/json' } })
  t.equal(b.statusCode, 200)
  await b.body.dump()
  sameHeaders(t, last(plain, '/aws/object'), [['x-api-key', KEYS.aws], ['accept', 'application/json']])
  const none = await request(`${http}/public`, { dispatcher: absolute })
  await none.body.dump()
})

t.test('the trail: where each credential sat, its kind and fingerprint, never its value', async (t) => {
  await sk.app.audit.settled()
  const events = sk.log.events('egress.inventory')
  const models = events.filter((e) => e.path === '/v1/models/:id')
  if (curl.path !== undefined) {
    t.equal(models.length, 2)
    t.match(models[0], { scheme: 'https', host: 'api.inv.test', port: secure.port, method: 'GET', status: 200, fingerprint_key: String })
    t.same((models[0]!.credentials as Array<Record<string, unknown>>).map(({ fingerprint: _, ...c }) => c), [
      { placement: 'authorization', name: 'authorization', scheme: 'Bearer', kind: 'sk-' },
      { placement: 'header', name: 'x-api-key', kind: 'ghp_' },
      { placement: 'query', name: 'key', kind: 'AIza' },
    ])
    t.same(models[0]!.credentials, models[1]!.credentials, 'the same key has the same fingerprint')
    t.match(events.find((e) => e.path === '/basic'), { scheme: 'http', credentials: [{ placement: 'basic', name: 'authorization', kind: 'opaque' }] })
  }
  if (python.path !== undefined) {
    t.match(events.find((e) => e.path === '/api/chat.postMessage'), { credentials: [{ placement: 'authorization', scheme: 'Bearer', kind: 'xoxb-' }, { placement: 'query', name: 'access_token', kind: 'jwt' }] })
  }
  t.match(events.find((e) => e.path === '/repos/acme/widget'), { credentials: [{ placement: 'authorization', scheme: 'token', kind: 'ghp_' }, { placement: 'header', name: 'private-token', kind: 'glpat-' }] })
  t.match(events.find((e) => e.path === '/aws/object'), { credentials: [{ placement: 'header', name: 'x-api-key', kind: 'AKIA' }] })
  t.same(events.find((e) => e.path === '/public')?.credentials, [])
  const github = events.filter((e) => JSON.stringify(e.credentials).includes('"ghp_"')).map((e) => (e.credentials as Array<{ kind: string, fingerprint: string }>).find((c) => c.kind === 'ghp_')!.fingerprint)
  t.equal(new Set(github).size, 1, 'one GitHub key in two placements: one fingerprint')

  for (const [name, key] of Object.entries({ ...KEYS, basic: `svc:${KEYS.password}` })) {
    for (const form of [key, Buffer.from(key).toString('base64'), encodeURIComponent(key), key.slice(4, 20)]) {
      t.notOk(sk.log.text.includes(form), `no trace of the ${name} key in the trail`)
    }
  }
  t.ok(sk.log.lines.some((l) => l.level === 40 && /inventory mode/.test(String(l.msg))), 'startup warns')
  const metrics = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  t.match(metrics, /sidekey_egress_unmatched_mode\{mode="inventory"\} 1/)
  t.match(metrics, /sidekey_egress_unmatched_mode\{mode="deny"\} 0/)
  t.equal(statSync(join(sk.caDir, INVENTORY_KEY_FILE)).mode & 0o777, 0o600, 'the fingerprint key is kept 0600 beside the CA')
})

t.test('sidekey audit inventory: the table, and a starter config that sidekey check accepts', async (t) => {
  await sk.app.audit.settled()
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-inventory-'))
  const trail = join(dir, 'audit.log')
  await writeFile(trail, sk.log.text + '{"cut": \n')
  const out = async (args: string[]): Promise<string> => {
    let text = ''
    const code = await inventoryCommand(args, { stdin: new PassThrough(), stdout: new Writable({ write (c, _e, cb) { text += c.toString(); cb() } }), stderr: new Writable({ write (_c, _e, cb) { cb() } }) })
    t.equal(code, 0)
    return text
  }
  const report = JSON.parse(await out(['--json', trail])) as InventoryReport
  const apiDest = report.destinations.find((d) => d.host === 'api.inv.test')!
  t.equal(apiDest.destination, `https://api.inv.test:${secure.port}`)
  t.equal(apiDest.instances, 1)
  if (curl.path !== undefined) t.match(apiDest.placements, [{ placement: 'authorization Bearer', kind: 'sk-', credentials: 1, instances: 1, calls: 3 }])
  t.equal(report.input.truncated, 1)
  const table = await out([trail])
  t.match(table, /^destination +placement +kind +credentials +instances +calls$/m)
  t.match(table, new RegExp(`^http://plain\\.inv\\.test:${plain.port} `, 'm'))
  t.match(table, /^ +header x-api-key +AKIA +1 +1 +1$/m)
  t.match(table, /1 line skipped \(1 truncated\)/)

  const yaml = await out(['--yaml', trail])
  t.match(yaml, /^# http:\/\/plain\.inv\.test:\d+: plain HTTP/m)
  t.match(yaml, new RegExp(`api\\.inv\\.test-${secure.port}:\\n {4}type: file`))
  t.match(yaml, /inject: \{ header: Authorization, format: "Bearer \{token\}" \}|inject: \{ header: Authorization, format: "token \{token\}" \}/)
  const filled = yaml.replace(/\/run\/secrets\/sidekey\/(\S+)/g, (_m, name: string) => join(dir, `${name}.secret`))
  for (const m of filled.matchAll(new RegExp(`${dir}/(\\S+)\\.secret`, 'g'))) await writeFile(`${dir}/${m[1]}.secret`, 'the-real-key\n')
  await writeFile(join(dir, 'starter.yaml'), filled)
  const check = await cli(['check', '--config', join(dir, 'starter.yaml')])
  t.equal(check.code, 0, check.stdout + check.stderr)
})

t.test('sidekey check explains inventory with a name-constrained CA, at the key', async (t) => {
  const text = 'instance_id: x\negress:\n  unmatched: inventory\nissuers: {}\ntools: {}\n'
  const err = await (async () => { try { parseConfig(text, 'inv.yaml', {}); return undefined } catch (e) { return e } })()
  t.ok(err instanceof ConfigError)
  t.match((err as ConfigError).problems, [{ line: 3, col: 14, path: 'egress.unmatched', message: /inventory intercepts TLS .* set ca\.name_constraints: false/ }])
  t.doesNotThrow(() => parseConfig(text + 'ca: { name_constraints: false }\n', 'inv.yaml', {}))
  t.equal((await readFile(join(sk.caDir, INVENTORY_KEY_FILE), 'utf8')).trim().length, 44)
})
