import t from 'tap'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { formatInventory, inventoryCommand, inventoryYaml, InventoryUsage } from '../../src/reports/inventory-report.js'
import { AuditInput } from '../../src/reports/input.js'
import { carriedCredentials } from '../../src/inventory/carried.js'
import { INVENTORY_KEY_FILE, loadOrCreateFingerprintKey } from '../../src/inventory/key.js'
import { parseConfig } from '../../src/config/load.js'

const inv = (o: Record<string, unknown>): string => JSON.stringify({ event: 'egress.inventory', scheme: 'https', port: 443, method: 'GET', path: '/', status: 200, instance_id: 'a', fingerprint_key: 'k1', ...o })
const cred = (placement: string, name: string, kind: string, fingerprint: string, scheme?: string): Record<string, unknown> => ({ placement, name, kind, fingerprint, ...(scheme === undefined ? {} : { scheme }) })

t.test('placements become tools; what cannot is listed as a comment', async (t) => {
  const usage = new InventoryUsage()
  const input = new AuditInput()
  const lines = [
    inv({ host: 'api.one.test', credentials: [cred('query', 'api_key', 'opaque', 'f1'), cred('query', 'api_key', 'opaque', 'f1')] }),
    inv({ host: 'api.one.test', instance_id: 'b', fingerprint_key: 'k2', credentials: [cred('query', 'api_key', 'opaque', 'f2')] }),
    inv({ host: 'api.two.test', port: 8443, credentials: [cred('basic', 'authorization', 'opaque', 'f3')] }),
    inv({ host: 'api.three.test', credentials: [cred('authorization', 'authorization', 'opaque', 'f4')] }),
    inv({ host: 'api.four.test', credentials: [cred('header', 'x-goog-api-key', 'AIza', 'f5'), null, 'x'] }),
    inv({ host: 'Bad_Host!', credentials: [cred('header', 'x-api-key', 'opaque', 'f6')] }),
    inv({ host: 'api.five.test', credentials: [cred('header', 'bad name: x', 'opaque', 'f7')] }),
    inv({ host: 'api.six.test', credentials: [] }),
    inv({ host: 'api.seven.test', port: 80, scheme: 'http', credentials: [cred('header', 'x-api-key', 'opaque', 'f8')] }),
    inv({ port: 443 }), // no host: ignored
    JSON.stringify({ event: 'credential.used', tool: 'x' }),
  ]
  for await (const rec of input.records(lines)) usage.add(rec)
  const report = usage.result(input.counts)
  t.equal(report.fingerprint_keys, 2)
  const one = report.destinations.find((d) => d.host === 'api.one.test')!
  t.same(one.placements, [{ placement: 'query api_key', kind: 'opaque', credentials: 2, instances: 2, calls: 2 }], 'a placement twice in one call is one call')
  t.equal(report.destinations.find((d) => d.host === 'api.two.test')!.destination, 'https://api.two.test:8443')
  t.match(formatInventory(report), /fingerprints from 2 different keys/)
  const yaml = inventoryYaml(report)
  t.match(yaml, /inject: \{ query: "api_key" \}/)
  t.match(yaml, /inject: \{ basic: \{ username: FILL-IN \} \}/)
  t.match(yaml, /match: \{ host: api\.two\.test, port: 8443 \}/)
  t.match(yaml, /inject: \{ header: Authorization, format: "\{token\}" \}/)
  t.match(yaml, /inject: \{ header: x-goog-api-key \}/)
  t.match(yaml, /# https:\/\/Bad_Host!: not a host name a tool can match/)
  t.match(yaml, /# https:\/\/api\.five\.test: placement header bad name: x cannot be written as a tool/)
  t.match(yaml, /# https:\/\/api\.six\.test: 1 calls, no credential seen/)
  t.match(yaml, /# http:\/\/api\.seven\.test: plain HTTP/)
  const filled = yaml.replace(/\/run\/secrets\/sidekey\/\S+/g, '/dev/null')
  t.doesNotThrow(() => parseConfig(filled, 'starter.yaml', {}), 'the starter config validates')
  t.match(formatInventory(new InventoryUsage().result(input.counts)), /no egress\.inventory events/)
  t.equal(inventoryYaml(new InventoryUsage().result(input.counts)).includes('tools: {}'), true)
})

t.test('the command: stdin, --yaml with skipped lines on stderr, usage', async (t) => {
  const run = async (args: string[], stdin: string): Promise<{ code: number, out: string, err: string }> => {
    let out = ''
    let err = ''
    const input = new PassThrough()
    input.end(stdin)
    const code = await inventoryCommand(args, { stdin: input, stdout: new Writable({ write (c, _e, cb) { out += c.toString(); cb() } }), stderr: new Writable({ write (c, _e, cb) { err += c.toString(); cb() } }) })
    return { code, out, err }
  }
  const trail = inv({ host: 'api.one.test', credentials: [cred('header', 'x-api-key', 'sk-', 'f1')] }) + '\nnot json\n'
  const yaml = await run(['--yaml'], trail)
  t.equal(yaml.code, 0)
  t.match(yaml.out, /inject: \{ header: x-api-key \}/)
  t.match(yaml.err, /1 line skipped \(1 not JSON\)/)
  t.equal((await run(['--nope'], '')).code, 2)
  t.equal((await run(['--help'], '')).code, 0)
  t.equal((await run(['/nonexistent/audit.log'], '')).code, 1)
})

t.test('carried credentials: kinds and fingerprints, never values', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-invkey-'))
  const key = await loadOrCreateFingerprintKey(join(dir, 'ca'))
  const again = await loadOrCreateFingerprintKey(join(dir, 'ca'))
  t.equal(again.id, key.id, 'the key persists')
  t.equal(again.fingerprint('x'), key.fingerprint('x'))
  const found = carriedCredentials(['Authorization', 'sk-ant-api03-0123456789abcdefghijAB', 'Cookie', 'session=abc', 'X-Session-Token', '', 'content-type', 'application/json',
    'X-Trace', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc'], '/p?sig=%E0%A4%A&x=1&&=v&flag', key)
  t.same(found.map(({ fingerprint: _, ...c }) => c), [
    { placement: 'authorization', name: 'authorization', kind: 'sk-ant-' },
    { placement: 'header', name: 'x-trace', kind: 'jwt' },
    { placement: 'query', name: 'sig', kind: 'opaque' },
  ])
  const basic = carriedCredentials(['authorization', `Basic ${Buffer.from('sk_live_0123456789abcdefABCD:').toString('base64')}`], '/', key)
  t.match(basic, [{ placement: 'basic', kind: 'sk_live_' }], 'a key in the user name (empty password) is the one classified')
  t.equal(carriedCredentials(Array.from({ length: 40 }, (_, i) => [`x-api-key-${i}`, 'v']).flat(), '/', key).length, 8, 'bounded')
  await writeFile(join(dir, INVENTORY_KEY_FILE), 'short\n')
  await t.rejects(loadOrCreateFingerprintKey(dir), { code: 'SIDEKEY_CONFIG_INVALID', message: /is not an inventory key/ })
  await writeFile(join(dir, 'a-file'), '')
  await t.rejects(loadOrCreateFingerprintKey(join(dir, 'a-file', 'ca')), { code: 'SIDEKEY_CONFIG_INVALID', message: /cannot be read or made \(ENOTDIR\)/ }, 'a CA dir that cannot be used fails the start')
})
