import { open } from 'node:fs/promises'
import type { Config } from '../../config/schema.js'
import {
  AuditInput, checkInputs, describeSkipped, describeUnsealed, esc, parseTime, parseVerbArgs, readFailed, readLines, str,
  type AuditIo, type AuditRecord, type InputCounts,
} from '../input.js'
import { InventoryUsage, formatInventory, type InventoryReport } from '../inventory-report.js'
import { ScopeUsage, loadConfigOrReport, sinceWindow, type ScopesReport } from '../scopes.js'
import { readKeys } from '../verify/command.js'
import { formatVerifyResult, NOT_AUTHENTICATED } from '../verify/format.js'
import type { PublicJwk, VerifyResult } from '../verify/types.js'
import { TrailVerifier } from '../verify/verify.js'
import { AnomalyLog, anomalyTable } from './anomalies.js'
import { barChart, color, dataTable, duration, histogram, html, timeSeries, type Series } from './charts.js'
import { Refusals, renderRefusals } from './refusals.js'
import { REPORT_USAGE as USAGE } from '../usage.js'

/**
 * `sidekey audit report --out report.html FILE…`: one self-contained HTML page (no script, no network, charts as
 * inline SVG) over audit trails: credential age at use per tool (a histogram), uses per tool and instance over
 * time, status codes, what was refused (destinations, calls, admin requests), anomalies on a timeline beside a table
 * of the latest, refresh failures on a timeline, the scope recommendations, and when the trail
 * has them the inventory, the tasks and the `verify` result. One streaming pass; every aggregate is bounded
 * (fixed age bins, at most MAX_BINS time bins, at most MAX_SERIES series), so memory and page size stay flat
 * however many events there are.
 */

const MAX_BINS = 240
const MAX_SERIES = 12
const MAX_PENDING = 200_000
const MAX_CREDENTIALS = 2_000_000
const MAX_TASKS = 1000
const MAX_ERRORS = 50
const OTHER = '(other)'

/** Upper edges (seconds) of the credential-age bins; the last bin is open. */
const AGE_EDGES = [
  10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 172_800, 604_800, 2_592_000,
]
const AGE_LABELS = [...AGE_EDGES.map((s) => `≤${duration(s * 1000)}`), `>${duration(AGE_EDGES.at(-1)! * 1000)}`]

/** Counts per time bin and series; the bin width doubles whenever the span would need more than MAX_BINS bins. */
export class TimeBins {
  width: number
  readonly #bins = new Map<number, Map<string, number>>()
  readonly totals = new Map<string, number>()
  #min = Infinity
  #max = -Infinity

  constructor (width = 60_000) { this.width = width }

  add (time: number, series: string, n = 1): void {
    const name = this.totals.has(series) || this.totals.size < MAX_SERIES ? series : OTHER
    this.totals.set(name, (this.totals.get(name) ?? 0) + n)
    let b = Math.floor(time / this.width)
    while (Math.max(this.#max, b) - Math.min(this.#min, b) >= MAX_BINS) {
      this.#rebin()
      b = Math.floor(time / this.width)
    }
    if (b < this.#min) this.#min = b
    if (b > this.#max) this.#max = b
    let m = this.#bins.get(b)
    if (m === undefined) this.#bins.set(b, m = new Map())
    m.set(name, (m.get(name) ?? 0) + n)
  }

  #rebin (): void {
    const old = [...this.#bins]
    this.#bins.clear()
    this.width *= 2
    this.#min = Infinity
    this.#max = -Infinity
    for (const [b, m] of old) {
      const nb = Math.floor(b / 2)
      if (nb < this.#min) this.#min = nb
      if (nb > this.#max) this.#max = nb
      let into = this.#bins.get(nb)
      if (into === undefined) this.#bins.set(nb, into = new Map())
      for (const [k, v] of m) into.set(k, (into.get(k) ?? 0) + v)
    }
  }

  get empty (): boolean { return this.#bins.size === 0 }

  /** Contiguous bins from the first to the last, one value array per series (largest total first). */
  series (): { start: number, width: number, series: Series[] } {
    if (this.empty) return { start: 0, width: this.width, series: [] }
    const names = [...this.totals].sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).map(([n]) => n)
    const n = this.#max - this.#min + 1
    const series = names.map((name) => {
      const values = new Array<number>(n).fill(0)
      for (const [b, m] of this.#bins) values[b - this.#min] = m.get(name) ?? 0
      return { name, values }
    })
    return { start: this.#min * this.width, width: this.width, series }
  }
}

interface AgeAcc { bins: number[], known: number, unknown: number, issued: number }

export interface ReportData {
  input: InputCounts
  first: number
  last: number
  instances: number
  uses: TimeBins
  status: Map<string, number>
  ages: Map<string, AgeAcc>
  anomalies: TimeBins
  anomalyLog: AnomalyLog
  refusals: Refusals
  refreshFailures: TimeBins
  refreshErrors: Map<string, number>
  tasks: Map<string, { calls: number, tools: Set<string>, errors: number }>
  tasksOverflow: number
  scopes: ScopesReport
  inventory: InventoryReport
  verify: VerifyResult | undefined
  /** The trail is still being written (`--live`): the newest run of an instance may end after its last checkpoint. */
  live: boolean
}

export class ReportBuilder {
  readonly uses = new TimeBins()
  readonly anomalies = new TimeBins()
  readonly anomalyLog = new AnomalyLog()
  readonly refusals = new Refusals()
  readonly refreshFailures = new TimeBins()
  readonly status = new Map<string, number>()
  readonly ages = new Map<string, AgeAcc>()
  readonly refreshErrors = new Map<string, number>()
  readonly tasks = new Map<string, { calls: number, tools: Set<string>, errors: number }>()
  readonly scopes: ScopeUsage
  readonly inventory = new InventoryUsage()
  readonly instances = new Set<string>()
  readonly #issuedAt = new Map<string, number>()
  /** Uses seen before their credential's `credential.issued` line (trails merged out of order). */
  readonly #pending = new Map<string, Array<{ tool: string, time: number }>>()
  #pendingCount = 0
  tasksOverflow = 0
  first = Infinity
  last = -Infinity

  constructor (scopes = new ScopeUsage()) { this.scopes = scopes }

  add (rec: AuditRecord): void {
    this.scopes.add(rec)
    this.inventory.add(rec)
    const time = parseTime(rec.time)
    const instance = str(rec.instance_id) ?? '?'
    if (this.instances.size < 10_000) this.instances.add(instance)
    if (time !== undefined) {
      if (time < this.first) this.first = time
      if (time > this.last) this.last = time
    }
    const tool = str(rec.tool) ?? '?'
    this.refusals.add(rec, time)
    switch (rec.event) {
      case 'credential.used': {
        if (time !== undefined) this.uses.add(time, `${tool} @ ${instance}`)
        const code = `${tool} ${typeof rec.status === 'number' ? rec.status : 0}`
        if (this.status.has(code) || this.status.size < 200) this.status.set(code, (this.status.get(code) ?? 0) + 1)
        const cid = str(rec.credential_id)
        if (cid !== undefined && time !== undefined) this.#use(tool, cid, time)
        const task = str(rec.task)
        if (task !== undefined) this.#task(task, tool, typeof rec.status === 'number' && rec.status >= 400)
        break
      }
      case 'credential.issued': {
        this.#age(tool).issued++
        const cid = str(rec.credential_id)
        const at = parseTime(rec.issued_at) ?? time
        if (cid === undefined || at === undefined) break
        const prev = this.#issuedAt.get(cid)
        const room = prev === undefined && this.#issuedAt.size < MAX_CREDENTIALS
        if (room || (prev !== undefined && at < prev)) this.#issuedAt.set(cid, at)
        const waiting = this.#pending.get(cid)
        if (waiting !== undefined) {
          this.#pending.delete(cid)
          this.#pendingCount -= waiting.length
          for (const w of waiting) this.#record(w.tool, w.time - at)
        }
        break
      }
      case 'credential.refresh_failed':
        if (time !== undefined) this.refreshFailures.add(time, tool)
        {
          const code = (str(rec.error) ?? 'unknown').split(/[\s:]/, 1)[0]!.slice(0, 80)
          if (this.refreshErrors.has(code) || this.refreshErrors.size < MAX_ERRORS) {
            this.refreshErrors.set(code, (this.refreshErrors.get(code) ?? 0) + 1)
          }
        }
        break
      case 'anomaly':
        this.anomalyLog.add(rec)
        if (time !== undefined) {
          const n = typeof rec.suppressed === 'number' && rec.suppressed > 0 ? rec.suppressed : 1
          this.anomalies.add(time, str(rec.kind) ?? 'unknown', n)
        }
        break
      default: break
    }
  }

  #use (tool: string, cid: string, time: number): void {
    const at = this.#issuedAt.get(cid)
    if (at !== undefined) { this.#record(tool, time - at); return }
    if (this.#pendingCount >= MAX_PENDING) { this.#age(tool).unknown++; return }
    let list = this.#pending.get(cid)
    if (list === undefined) this.#pending.set(cid, list = [])
    list.push({ tool, time })
    this.#pendingCount++
  }

  #record (tool: string, ageMs: number): void {
    const acc = this.#age(tool)
    const s = Math.max(0, ageMs / 1000)
    let i = AGE_EDGES.findIndex((e) => s <= e)
    if (i === -1) i = AGE_EDGES.length
    acc.bins[i]!++
    acc.known++
  }

  #age (tool: string): AgeAcc {
    let a = this.ages.get(tool)
    if (a === undefined) {
      a = { bins: new Array<number>(AGE_EDGES.length + 1).fill(0), known: 0, unknown: 0, issued: 0 }
      this.ages.set(tool, a)
    }
    return a
  }

  #task (task: string, tool: string, error: boolean): void {
    let t = this.tasks.get(task)
    if (t === undefined) {
      if (this.tasks.size >= MAX_TASKS) { this.tasksOverflow++; return }
      this.tasks.set(task, t = { calls: 0, tools: new Set(), errors: 0 })
    }
    t.calls++
    if (t.tools.size < 20) t.tools.add(tool)
    if (error) t.errors++
  }

  finish (input: InputCounts, config: Readonly<Config> | undefined, verify: VerifyResult | undefined, live = false)
    : ReportData {
    for (const list of this.#pending.values()) for (const w of list) this.#age(w.tool).unknown++
    this.#pending.clear()
    return {
      input,
      first: this.first,
      last: this.last,
      instances: this.instances.size,
      uses: this.uses,
      status: this.status,
      ages: this.ages,
      anomalies: this.anomalies,
      anomalyLog: this.anomalyLog,
      refusals: this.refusals,
      refreshFailures: this.refreshFailures,
      refreshErrors: this.refreshErrors,
      tasks: this.tasks,
      tasksOverflow: this.tasksOverflow,
      scopes: this.scopes.result(config, input),
      inventory: this.inventory.result(input),
      verify,
      live,
    }
  }
}

/** The bin a quantile falls in, as its label (the distribution is binned, so this is an upper bound). */
function quantileLabel (bins: readonly number[], known: number, q: number): string {
  let acc = 0
  for (let i = 0; i < bins.length; i++) {
    acc += bins[i]!
    if (acc >= q * known) return AGE_LABELS[i]!
  }
  return '-'
}

const STATUS_COLORS: Record<string, string> = { 2: '#2ca02c', 3: '#17becf', 4: '#ff7f0e', 5: '#d62728' }
const STATUS_COLOR = (code: string): string => STATUS_COLORS[code.charAt(0)] ?? '#7f7f7f'

// Narrow screens: charts scale down (max-width), preformatted text wraps, and each table row becomes a card of
// `column: value` lines (td's data-label) rather than widen the page; on a wide one the anomaly timeline and its
// table sit side by side, the age histograms two a row.
const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1360px;padding:0 12px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:18px 0 6px}
figure{margin:12px 0;max-width:720px}figcaption{font-weight:600;margin-bottom:4px}svg{max-width:100%;height:auto}
svg text{font-size:11px;fill:#333}svg .tick{font-size:10px;fill:#666}.note{color:#666;font-size:12px;margin:2px 0}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i,.dot{display:inline-block;width:10px;height:10px;margin-right:4px}.dot{border-radius:50%}
table{border-collapse:collapse;font-size:12px}
td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}time,.nw{white-space:nowrap}
pre{background:#f6f6f6;padding:8px;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}
.ok{color:#2ca02c;font-weight:600}.bad{color:#d62728;font-weight:600}.warn{color:#b26b00;font-weight:600}
.banner{background:#d62728;color:#fff;font-weight:600;padding:8px 12px;border-radius:4px}
.pair,.grid{display:flex;flex-wrap:wrap;gap:0 24px;align-items:flex-start}.pair>*,.grid>*{flex:1 1 560px;min-width:0}
@media (max-width:640px){table,tbody,tr,td{display:block}tr:first-child{display:none}
tr{border-bottom:1px solid #ddd;padding:4px 0}
td{border:0;padding:1px 0}td:empty{display:none}td::before{content:attr(data-label) ": ";color:#666}}`

export function renderReport (d: ReportData, generatedAt = new Date()): string {
  const out: string[] = []
  const range = Number.isFinite(d.first)
    ? `${new Date(d.first).toISOString()} .. ${new Date(d.last).toISOString()}`
    : 'no timestamps'
  out.push('<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width">' +
    `<title>sidekey audit report</title><style>${CSS}</style></head><body>`)
  const instances = `${d.instances} instance${d.instances === 1 ? '' : 's'}`
  out.push(`<h1>sidekey audit report</h1><p>${d.input.events} events from ${instances}, ` +
    `${html(range)}; ${d.input.lines} lines read` + (d.input.skipped > 0 ? `; ${html(describeSkipped(d.input))}` : '') +
    `. Generated ${html(generatedAt.toISOString())}.</p>`)
  const r = d.refusals
  out.push(`<p>At a glance: ${r.total} refused (${r.destinations.total} destinations, ${r.calls.total} calls, ` +
    `${r.admin.total} admin requests), ${d.anomalyLog.total} anomalies.</p>`)

  if (d.verify !== undefined) out.push(integritySection(d.input, d.verify, d.live))

  out.push(renderRefusals(d.refusals))

  out.push('<h2 id="anomalies">Anomalies</h2>')
  const an = d.anomalies.series()
  const kinds = new Map(an.series.map((s, i) => [s.name, color(i)]))
  const timeline = timeSeries('anomalies', 'anomalies by kind on the timeline', an.start, an.width, an.series, 'dots')
  out.push(`<div class="pair">${timeline}<div>${anomalyTable(d.anomalyLog, (kind) => kinds.get(kind))}</div></div>`)

  out.push('<h2 id="age">Credential age at use</h2><div class="grid">')
  const ageTools = [...d.ages].filter(([, a]) => a.known > 0 || a.unknown > 0).sort(([a], [b]) => a.localeCompare(b))
  if (ageTools.length === 0) out.push('<p>No credential use in the trail.</p>')
  for (const [tool, a] of ageTools) {
    const note = a.known === 0
      ? `${a.unknown} uses, none whose credential.issued is in the trail`
      : `${a.known} uses; p50 ${quantileLabel(a.bins, a.known, 0.5)}, p90 ${quantileLabel(a.bins, a.known, 0.9)}, ` +
        `max ${quantileLabel(a.bins, a.known, 1)}` +
        (a.unknown > 0 ? `; ${a.unknown} uses whose credential was issued before the trail starts` : '') +
        `; ${a.issued} issued`
    const bins = a.bins.map((count, i) => ({ label: AGE_LABELS[i]!, count }))
    out.push(histogram(`age:${tool}`, `${tool}: age of the credential at each use`, bins, note))
  }
  out.push('</div>')

  out.push('<h2 id="uses">Uses per tool and instance</h2>')
  const uses = d.uses.series()
  out.push(timeSeries('uses', 'credential.used per bin, per tool @ instance', uses.start, uses.width, uses.series))

  out.push('<h2 id="status">Status codes</h2>')
  const status = [...d.status].sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).slice(0, 30)
  out.push(barChart('status', 'uses by tool and status (0: no response)',
    status.map(([k, v]) => ({ label: k, value: v, color: STATUS_COLOR(k.slice(k.lastIndexOf(' ') + 1)) }))))

  out.push('<h2 id="refresh">Refresh failures</h2>')
  const rf = d.refreshFailures.series()
  const rfTitle = 'credential.refresh_failed by tool on the timeline'
  out.push(timeSeries('refresh-failures', rfTitle, rf.start, rf.width, rf.series, 'dots'))
  out.push(barChart('refresh-errors', 'refresh failures by error code',
    [...d.refreshErrors].sort(([, x], [, y]) => y - x).map(([k, v]) => ({ label: k, value: v }))))

  out.push('<h2 id="scopes">Scope recommendations</h2>')
  out.push(scopesTable(d.scopes))

  if (d.tasks.size > 0) {
    const rows = [...d.tasks].sort(([, a], [, b]) => b.calls - a.calls).slice(0, 100)
      .map(([task, t]) => [html(task), String(t.calls), String(t.errors), html([...t.tools].join(', '))])
    out.push('<h2 id="tasks">Tasks</h2>' + dataTable('tasks', ['task', 'calls', 'errors', 'tools'], rows,
      d.tasks.size > 100 || d.tasksOverflow > 0
        ? `the 100 busiest of ${d.tasks.size}${d.tasksOverflow > 0 ? '+' : ''} tasks`
        : ''))
  }

  if (d.inventory.destinations.length > 0) {
    out.push('<h2 id="inventory">Inventory</h2>')
    out.push(barChart('inventory', 'calls per destination no tool covers',
      d.inventory.destinations.slice(0, 30).map((x) => ({ label: x.destination, value: x.calls }))))
    out.push(`<pre data-table="inventory">${html(formatInventory(d.inventory))}</pre>`)
  }
  out.push('</body></html>\n')
  return out.join('\n')
}

/**
 * The verify result, never silently absent: a red banner when events without a seal were left out (or counted
 * before the first seal), or when no line is sealed and so nothing could be verified.
 */
function integritySection (input: InputCounts, v: VerifyResult, live: boolean): string {
  const banners: string[] = []
  const unsealed = describeUnsealed(input)
  if (unsealed !== '') banners.push(`Left out of this report: ${unsealed}.`)
  const unverifiable = v.runs === 0
  if (unverifiable && input.events > 0) {
    banners.push('No line of this trail is sealed: its integrity could not be verified, and nothing in this report ' +
      'is vouched for.')
  }
  const [cls, state, text] = v.intact
    ? ['ok', 'intact', 'intact']
    : v.consistent
      ? ['warn', 'unauthenticated', NOT_AUTHENTICATED]
      : ['bad', unverifiable ? 'unverified' : 'broken', unverifiable ? 'NOT VERIFIED' : 'NOT INTACT']
  // A trail still being written ends after its last checkpoint; without --live that is a cut tail.
  const hint = !live && v.problems.some((p) => p.kind === 'tail')
    ? '<p class="note" data-hint="live">A run ends after its last checkpoint: if the trail is still being written, ' +
      'run again with --live.</p>'
    : ''
  const open = live ? ' (--live: the newest run of each instance may still be open)' : ''
  const red = banners.map((b) => `<p class="banner" data-banner="integrity">${html(b)}</p>`).join('')
  return `<h2 id="verify">Trail integrity</h2>${red}` +
    `<p class="${cls}" data-verify="${state}">${html(text)}${open}</p>` +
    `${hint}<pre data-verify-text>${html(formatVerifyResult(v))}</pre>`
}

function scopesTable (r: ScopesReport): string {
  if (r.tools.length === 0) return '<p>No tools in the trail (or config).</p>'
  const rows = r.tools.map((t) => {
    const g = t.granted
    const rec = [
      t.recommend.methods === undefined ? '' : `methods: [${t.recommend.methods.join(', ')}]`,
      t.recommend.path_prefix === undefined ? '' : `path_prefix: ${t.recommend.path_prefix}`,
    ].filter((s) => s !== '').join(' ')
    return [html(t.tool), g === null ? '-' : html(`${g.methods?.join(',') ?? 'any'} ${g.path_prefix}`),
      String(t.used.calls),
      html(Object.keys(t.used.methods).join(',')), html(t.used.common_prefix ?? '-'), html(t.used.last_use ?? '-'),
      `${t.unused ? '<b>unused</b> ' : ''}${html(rec)}`]
  })
  return dataTable('scopes', ['tool', 'granted', 'calls', 'methods', 'common prefix', 'last use', 'recommend'], rows) +
    (r.patch === '' ? '' : `<pre>${html(r.patch)}</pre>`)
}

const VERB = 'sidekey audit report'

/** Exit codes: 0 written, 1 a file could not be read or written, 2 bad usage or config. */
export async function reportCommand (args: string[], io: AuditIo): Promise<number> {
  const parsed = parseVerbArgs(VERB, USAGE, args, {
    out: { type: 'string', short: 'o' },
    config: { type: 'string', short: 'c' },
    since: { type: 'string' },
    keys: { type: 'string', multiple: true },
    live: { type: 'boolean' },
  }, io)
  if (typeof parsed === 'number') return parsed
  const { values, files } = parsed
  if (typeof values.out !== 'string') { io.stderr.write(`${VERB}: --out FILE is required\n${USAGE}`); return 2 }
  const window = sinceWindow(typeof values.since === 'string' ? values.since : 'all')
  if (window === null) {
    io.stderr.write(`${VERB}: --since expects a duration like 30d or 12h, or all\n${USAGE}`)
    return 2
  }
  const config = typeof values.config === 'string' ? await loadConfigOrReport(values.config, VERB, io) : undefined
  if (typeof values.config === 'string' && config === undefined) return 2
  let keys: PublicJwk[] | undefined
  for (const file of (values.keys as unknown as string[] | undefined) ?? []) {
    const loaded = await readKeys(file)
    if (typeof loaded === 'string') { io.stderr.write(`${VERB}: --keys ${esc(file)}: ${loaded}\n`); return 2 }
    keys = [...(keys ?? []), ...loaded]
  }
  const live = values.live === true
  const stop = await checkInputs(VERB, files, USAGE, io)
  if (stop !== undefined) return stop
  const started = performance.now()
  const input = new AuditInput()
  const builder = new ReportBuilder(new ScopeUsage(window))
  const verifier = new TrailVerifier({ ...(keys === undefined ? {} : { keys }), live })
  try {
    const lines = tee(readLines(files, io.stdin), (line) => verifier.line(line))
    for await (const rec of input.records(lines)) builder.add(rec)
  } catch (err) {
    return readFailed(VERB, err, io)
  }
  const page = renderReport(builder.finish(input.counts, config, verifier.finish(), live))
  try {
    const fh = await open(values.out, 'w', 0o644)
    try { await fh.writeFile(page) } finally { await fh.close() }
  } catch (err) {
    io.stderr.write(`${VERB}: cannot write ${html(values.out)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}\n`)
    return 1
  }
  const ms = Math.round(performance.now() - started)
  const bytes = Buffer.byteLength(page)
  io.stderr.write(`${VERB}: ${input.counts.events} events, ${bytes} bytes written to ${values.out} in ${ms} ms\n`)
  return 0
}

async function * tee (lines: AsyncIterable<string>, also: (line: string) => void): AsyncIterable<string> {
  for await (const line of lines) {
    also(line)
    yield line
  }
}
