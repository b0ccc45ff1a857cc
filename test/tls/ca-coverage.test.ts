import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { startSidekey } from '../helpers/sidekey.js'
import { bodyOf, raw } from '../hardening/helpers.js'
import { until } from '../helpers/until.js'
import { needBinary, systemBinary } from '../helpers/system-binary.js'
import { upstreamPki } from '../helpers/upstream.js'
import { LineLimiter } from '../../src/audit/line-limit.js'
import { DAY, tempDir } from './helpers.js'

// Probed before the first subtest: a top-level await between subtests can outlive them, and tap ends the root then.
const curl = await systemBinary('curl', 'curl')
t.test('3. a tool host the CA cannot cover: warned at start and reload, refused per CONNECT with a reason, shown in /status and a metric; the CA is never replaced', async (t) => {
  const dir = await tempDir(t)
  const caDir = join(dir, 'ca')
  const made = await loadOrCreateCa({ dir: caDir, validityMs: 30 * DAY, nameConstraints: ['a.tool.test'] })
  const pem = await readFile(join(caDir, 'ca.pem'), 'utf8')
  const yaml = (hosts: readonly string[]): string => `instance_id: cover
ca: { dir: ${caDir} }
issuers: { local: { type: local_jwt } }
tools:
${hosts.map((h) => `  ${h[0]}: { match: { host: ${h} }, issuer: local }`).join('\n')}
`
  const file = join(dir, 'sidekey.yaml')
  await writeFile(file, yaml(['a.tool.test', 'c.tool.test']))
  const sk = await startSidekey(t, yaml(['a.tool.test', 'c.tool.test']), { configFile: file })
  t.equal(sk.app.ca.fingerprint256, made.fingerprint256, 'start kept the CA')
  t.equal(await readFile(join(caDir, 'ca.pem'), 'utf8'), pem)
  const warning = sk.log.lines.find((l) => /outside the interception CA's name constraints/.test(String(l.msg)))
  t.same(warning?.tools, ['c'], 'the start-up warning names the tool')

  const r = await raw(sk.proxyPort, 'CONNECT c.tool.test:443 HTTP/1.1\r\nHost: c.tool.test:443\r\n\r\n')
  t.equal(r.status, 403)
  t.match(bodyOf(r.text), { error: 'egress_denied', reason: 'ca_constraint', detail: /sidekey ca --rotate/ })
  t.match(r.text, /\r\nproxy-status: sidekey; error=proxy_configuration_error; details="host is outside/i)
  t.match(sk.log.events('egress.denied'), [{ host: 'c.tool.test', port: 443, reason: 'ca_constraint', method: 'CONNECT' }])
  t.equal((await raw(sk.proxyPort, 'CONNECT a.tool.test:443 HTTP/1.1\r\nHost: a.tool.test:443\r\n\r\n', { until: (s) => s.includes('\r\n\r\n') })).status, 200, 'a covered host is intercepted')

  const status = await (await request(`${sk.adminUrl}/status`)).body.json() as { tools: Record<string, Record<string, unknown>> }
  t.match(status.tools.c, { servable: false, reason: 'ca_constraint' })
  t.equal(status.tools.a?.servable, undefined)
  const metrics = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  t.match(metrics, 'sidekey_tool_ca_covered{tool="a"} 1')
  t.match(metrics, 'sidekey_tool_ca_covered{tool="c"} 0')
  t.match(metrics, 'sidekey_egress_denied_by_reason_total{reason="ca_constraint"} 1')
  // An agent retrying in a loop: every refusal counted, the log holds at most 10 lines a minute for the host.
  for (let i = 0; i < 11; i++) t.equal((await raw(sk.proxyPort, 'CONNECT c.tool.test:443 HTTP/1.1\r\nHost: c.tool.test:443\r\n\r\n')).status, 403)
  t.equal(sk.log.events('egress.denied').length, 10, 'rate-limited lines')
  t.match(await (await request(`${sk.adminUrl}/metrics`)).body.text(), 'sidekey_egress_denied_by_reason_total{reason="ca_constraint"} 12')

  // A reload adding yet another host keeps the CA too, and says so again.
  await writeFile(file, yaml(['a.tool.test', 'c.tool.test', 'd.tool.test']))
  await sk.app.reload()
  t.equal(await readFile(join(caDir, 'ca.pem'), 'utf8'), pem, 'reload kept the CA')
  t.same(sk.log.lines.filter((l) => /outside the interception CA/.test(String(l.msg))).at(-1)?.tools, ['c', 'd'])
  t.match(await (await request(`${sk.adminUrl}/metrics`)).body.text(), 'sidekey_tool_ca_covered{tool="d"} 0')
})

t.test('8. an agent that does not trust the CA: its failed handshake is audited with the alert, counted, and rate-limited', { skip: curl.skip }, async (t) => {
  if (!needBinary(t, curl) || curl.path === undefined) return
  const sk = await startSidekey(t, `
instance_id: distrust
ca: { dir: {{CA_DIR}} }
issuers: { local: { type: local_jwt } }
tools: { a: { match: { host: a.tool.test }, issuer: local } }
`)
  // curl trusting only another CA (not sidekey's): it sends the unknown_ca alert, as OpenSSL-based clients do.
  const other = await upstreamPki()
  const run = (): Promise<number> => new Promise((resolve) => {
    execFile(curl.path!, ['-sS', '-o', '/dev/null', '--max-time', '20', '--cacert', other.caFile, '-x', sk.proxyUrl, 'https://a.tool.test/'],
      (err) => { resolve(typeof err?.code === 'number' ? err.code : 0) })
  })
  t.equal(await run(), 60, 'curl: peer certificate cannot be authenticated with known CA certificates')
  await until(() => sk.log.events('tls.client_error').length === 1)
  t.match(sk.log.events('tls.client_error')[0], { host: 'a.tool.test', port: 443, alert: 'unknown_ca', client: /^127\.0\.0\.1:\d+$/ })
  t.match(await (await request(`${sk.adminUrl}/metrics`)).body.text(), 'sidekey_tls_client_error_total{alert="unknown_ca"} 1')
})

t.test('8. the lines of repeatable events are limited per key; what is held back is counted on the next line', async (t) => {
  const lines = new LineLimiter(2, 1000)
  t.same([lines.take('a', 0), lines.take('a', 1), lines.take('a', 2), lines.take('a', 3), lines.take('b', 3)], [0, 0, undefined, undefined, 0])
  t.equal(lines.take('a', 1000), 2, 'the next window says how many were held back')
  t.equal(lines.take('a', 1001), 0)
})
