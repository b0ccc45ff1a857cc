import { describeSkipped, describeUnsealed, type InputCounts } from '../input.js'
import { formatInventory } from '../inventory-report.js'
import type { ScopesReport } from '../scopes.js'
import { formatVerifyResult, NOT_AUTHENTICATED } from '../verify/format.js'
import type { VerifyResult } from '../verify/types.js'
import { anomalyTable } from './anomalies.js'
import { AGE_LABELS, type ReportData } from './builder.js'
import { barChart, color, dataTable, histogram, html, timeSeries } from './charts.js'
import { renderRefusals } from './refusals.js'

/** The report page: one self-contained HTML document (inline CSS and SVG, no script) from the aggregates. */

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
