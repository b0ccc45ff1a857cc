import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { startSidekey } from '../helpers/sidekey.js'
import { bodyOf, raw } from '../hardening/helpers.js'
import { DAY, tempDir } from './helpers.js'

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

  // A reload adding yet another host keeps the CA too, and says so again.
  await writeFile(file, yaml(['a.tool.test', 'c.tool.test', 'd.tool.test']))
  await sk.app.reload()
  t.equal(await readFile(join(caDir, 'ca.pem'), 'utf8'), pem, 'reload kept the CA')
  t.same(sk.log.lines.filter((l) => /outside the interception CA/.test(String(l.msg))).at(-1)?.tools, ['c', 'd'])
  t.match(await (await request(`${sk.adminUrl}/metrics`)).body.text(), 'sidekey_tool_ca_covered{tool="d"} 0')
})
