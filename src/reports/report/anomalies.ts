import { parseTime, str, type AuditRecord } from '../input.js'
import { clock, cut, dataTable, html } from './charts.js'

/**
 * The latest anomalies in detail (time, kind, tool, instance, detail) for the table beside the timeline, which
 * only counts them per bin. Bounded: once twice MAX_ROWS are held, the oldest are dropped, so merged trails in any
 * order still end with the latest MAX_ROWS. `detail` is written from what the agent sent (a host, a path): it is
 * cut short and escaped.
 */

const MAX_ROWS = 100

interface Entry {
  time: number
  /** The line's own time text, shown when it does not parse. */
  at: string
  kind: string
  tool: string
  instance: string
  detail: string
  suppressed: number
}

export class AnomalyLog {
  #entries: Entry[] = []
  total = 0

  add (rec: AuditRecord): void {
    this.total++
    const time = parseTime(rec.time) ?? -Infinity
    this.#entries.push({
      time,
      at: str(rec.time) ?? '?',
      kind: str(rec.kind) ?? 'unknown',
      tool: str(rec.tool) ?? '-',
      instance: str(rec.instance_id) ?? '?',
      detail: cut(str(rec.detail) ?? '', 300),
      suppressed: typeof rec.suppressed === 'number' ? rec.suppressed : 0,
    })
    if (this.#entries.length >= 2 * MAX_ROWS) this.#trim()
  }

  #trim (): void {
    this.#entries.sort((a, b) => a.time - b.time)
    this.#entries = this.#entries.slice(-MAX_ROWS)
  }

  /** The latest MAX_ROWS, newest first. */
  latest (): Entry[] {
    this.#trim()
    return [...this.#entries].reverse()
  }
}

/** A name kept on one line when short, so a narrow column does not split it. */
const short = (s: string): string => s.length <= 24 ? `<span class="nw">${html(s)}</span>` : html(cut(s, 60))

/** `colorOf` gives each kind the colour of its dots on the timeline, so a row and its dot match. */
export function anomalyTable (log: AnomalyLog, colorOf: (kind: string) => string | undefined): string {
  if (log.total === 0) return ''
  const rows = log.latest().map((e) => {
    const swatch = colorOf(e.kind)
    const dot = swatch === undefined ? '' : `<i class="dot" style="background:${swatch}"></i>`
    const suppressed = e.suppressed > 0 ? ` <span class="note">(+${e.suppressed} suppressed)</span>` : ''
    const at = Number.isFinite(e.time) ? clock(e.time) : html(cut(e.at, 40))
    return [at, `<span class="nw">${dot}${html(cut(e.kind, 40))}</span>`,
      short(e.tool), short(e.instance), html(e.detail) + suppressed]
  })
  const note = log.total > rows.length ? `the latest ${rows.length} of ${log.total} anomalies` : ''
  return dataTable('anomalies', ['time', 'kind', 'tool', 'instance', 'detail'], rows, note)
}
