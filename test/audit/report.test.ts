import t from 'tap'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import { reportCommand, TimeBins } from '../../src/audit/report/report.js'
import { startSidekey } from '../helpers/sidekey.js'
import { systemBinary, needBinary } from '../helpers/system-binary.js'
import { openPage } from '../helpers/chromium.js'
import { request } from 'undici'
import { sealTrail, syntheticTrail } from './trail-generator.js'

/**
 * The HTML report over a real sealed trail (a running sidekey's own lines, so the verify result shows) plus a
 * synthetic one, rendered in headless chromium: every chart is in the DOM and nothing is logged as an error.
 */
const chromium = await systemBinary('chromium', 'chromium')
const dir = await mkdtemp(join(tmpdir(), 'sidekey-report-'))
const sk = await startSidekey(t, `
instance_id: report-1
ca: { dir: {{CA_DIR}} }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.report.test }, issuer: local }
`)
await sk.app.audit.settled()
const skKeys = (await (await request(`${sk.adminUrl}/audit-key`)).body.json() as { keys: unknown[] }).keys
// Closed, so its run ends with the shutdown checkpoint and verifies intact (closing again at teardown is harmless).
await sk.app.close()
const hostile = JSON.stringify({ time: '2026-11-01T00:00:01Z', instance_id: 'agent-a', event: 'credential.used', tool: '<img src=x onerror=alert(1)>', credential_id: null, method: 'GET', host: 'h', path: '/', status: 200 })
const trail = join(dir, 'audit.log')
// The synthetic part sealed as sidekey writes it: in a sealed trail, a line without a seal would be left out.
const synthetic = sealTrail([...syntheticTrail(3000, Date.now() - 3000 * 250), hostile])
await writeFile(trail, [sk.log.text.trimEnd(), ...synthetic.lines, '{"cut": ', 'plain text', '[1]'].join('\n') + '\n')
const keys = join(dir, 'keys.json')
await writeFile(keys, JSON.stringify({ keys: [...skKeys, ...synthetic.keys] }))
const config = join(dir, 'sidekey.yaml')
await writeFile(config, 'instance_id: r\nissuers: { gh: { type: file, path: /run/secrets/gh } }\ntools:\n  github: { match: { host: api.github.com }, issuer: gh }\n  unused: { match: { host: old.example.com }, issuer: gh }\n')

async function run (args: string[]): Promise<{ code: number, err: string }> {
  let err = ''
  const code = await reportCommand(args, { stdin: new PassThrough(), stdout: new Writable({ write (_c, _e, cb) { cb() } }), stderr: new Writable({ write (c, _e, cb) { err += c.toString(); cb() } }) })
  return { code, err }
}

const out = join(dir, 'report.html')
const CHARTS = ['age:github', 'age:openai', 'age:slack', 'age:crm', 'uses', 'status', 'anomalies', 'refresh-failures', 'refresh-errors', 'inventory']

t.test('one self-contained page with every chart, the scopes, tasks, inventory and verify result', async (t) => {
  const r = await run(['--out', out, '--config', config, '--keys', keys, trail])
  t.equal(r.code, 0, r.err)
  t.match(r.err, /\d+ events, \d+ bytes written to .*report\.html in \d+ ms/)
  const page = await readFile(out, 'utf8')
  t.notMatch(page, /<script|<link|<img|<iframe|<object|\ssrc=["']|\shref=["']|@import|url\(|@font-face/i, 'no script, no external resource, no font')
  for (const id of CHARTS) t.match(page, `data-chart="${id}"`, `chart ${id}`)
  for (const table of ['scopes', 'tasks', 'inventory']) t.match(page, `data-table="${table}"`)
  t.match(page, /data-verify="intact"/, 'the verify result, against the instances\' keys')
  t.notMatch(page, /data-banner/, 'no banner: every event sealed')
  t.match(page, /3 lines skipped \(1 truncated, 1 not JSON, 1 foreign JSON\)/)
  t.match(page, /methods: \[GET\] path_prefix: \/repos\/acme\//, 'the scope recommendation for github')
  t.match(page, /<b>unused<\/b>/)
  t.notMatch(page, /<img/, 'trail text is escaped')
  t.ok(Buffer.byteLength(page) < 200_000, 'bounded size')
})

/** Five calls appended by whoever can write the log: shaped like credential.used, no run_id/seq/chain. */
const fabricated = Array.from({ length: 5 }, (_, i) => JSON.stringify({ level: 30, time: new Date().toISOString(), instance_id: 'agent-a', event: 'credential.used', tool: 'fabricated', credential_id: 'x', method: 'GET', host: 'h', path: `/f/${i}`, status: 200, task: 'fabricated-task' }))

t.test('events without a seal in a sealed trail: left out, counted, and a red banner says so', async (t) => {
  const forged = join(dir, 'forged.log')
  await writeFile(forged, [...synthetic.lines, ...fabricated].join('\n') + '\n')
  const forgedOut = join(dir, 'forged.html')
  const r = await run(['--out', forgedOut, '--keys', keys, forged])
  t.equal(r.code, 0, r.err)
  const page = await readFile(forgedOut, 'utf8')
  t.match(page, /<p class="banner" data-banner="integrity">Left out of this report: 5 events without a seal left out/)
  t.match(page, /data-verify="broken"/, 'verify fails on them')
  t.match(page, /line 3\d{3}: credential\.used without a seal/, 'naming each line')
  t.notMatch(page, /fabricated/, 'neither the tool nor the task of a fabricated call is in the report')
  // A trail with no seal at all: the integrity section stays, and says verification could not run.
  const plain = join(dir, 'plain.log')
  await writeFile(plain, [...syntheticTrail(200)].join('\n') + '\n')
  t.equal((await run(['--out', forgedOut, plain])).code, 0)
  const unverified = await readFile(forgedOut, 'utf8')
  t.match(unverified, /data-banner="integrity">No line of this trail is sealed: its integrity could not be verified/)
  t.match(unverified, /data-verify="unverified"/)
})

t.test('rendered by headless chromium: every chart in the DOM, no console error', { skip: chromium.skip }, async (t) => {
  if (!needBinary(t, chromium)) return
  const page = await openPage(chromium.path!, pathToFileURL(out).href)
  t.teardown(() => page.close())
  const charts = await page.evaluate<Array<[string, number]>>("[...document.querySelectorAll('figure[data-chart]')].map((f) => [f.dataset.chart, f.querySelectorAll('svg rect, svg polyline, svg circle').length])")
  t.same(charts.map(([id]) => id).filter((id) => CHARTS.includes(id)).sort(), [...CHARTS].sort())
  for (const [id, marks] of charts) t.ok(marks > 0, `${id} draws something`)
  t.equal(await page.evaluate<number>('document.images.length'), 0, 'the hostile tool name stayed text')
  t.same(page.errors, [], 'no console error')
  if (process.env.SIDEKEY_REPORT_SCREENSHOT !== undefined) await writeFile(process.env.SIDEKEY_REPORT_SCREENSHOT, await page.screenshot())
})

t.test('usage errors and bins', async (t) => {
  t.equal((await run([])).code, 2, '--out is required')
  t.equal((await run(['--out', out, '--since', 'x'])).code, 2)
  t.equal((await run(['--out', out, '--config', join(dir, 'missing.yaml')])).code, 2)
  t.equal((await run(['--out', join(dir, 'no', 'such', 'dir.html'), trail])).code, 1)
  t.equal((await run(['--out', out, join(dir, 'missing.log')])).code, 1)
  const bins = new TimeBins(1000)
  for (let i = 0; i < 100_000; i += 7) bins.add(i * 1000, `s${i % 20}`)
  const s = bins.series()
  t.ok(s.series[0]!.values.length <= 240, 'at most 240 bins')
  t.equal(s.series.length, 13, '12 series and (other)')
  t.equal(s.series.reduce((n, x) => n + x.values.reduce((a, b) => a + b, 0), 0), Math.ceil(100_000 / 7), 'nothing lost when bins merge')
})
