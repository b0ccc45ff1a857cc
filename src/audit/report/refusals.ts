import { ipFamily } from '../../net/family.js'
import { classifyIp } from '../../net/ip.js'
import { str, type AuditRecord } from '../input.js'
import { barChart, clock, cut, dataTable, html } from './charts.js'

/**
 * What sidekey refused, for the report's Refusals section: destinations (`egress.denied`, by host, port and
 * reason), calls refused before reaching their tool (`credential.used` with an `outcome`: placeholder_required,
 * method_denied, locked, and whatever outcome a newer sidekey writes, budget or approval refusals included, grouped
 * by its name), and admin POSTs (`admin.denied`). Every field comes from the trail, so the agent chose most of it:
 * each is cut short and escaped when drawn, and each tally keeps at most MAX_ROWS distinct rows.
 */

const MAX_ROWS = 500
const SHOWN = 50

interface Row { cells: string[], count: number, first: number, last: number, example: string }

/** Counts per distinct tuple of cells, with the first and last time seen and the first non-empty example. */
export class Tally {
  readonly #rows = new Map<string, Row>()
  total = 0
  /** Events whose tuple arrived after MAX_ROWS distinct ones: counted in `total`, not in a row. */
  overflow = 0

  add (cells: string[], time: number | undefined, example = ''): void {
    this.total++
    const key = JSON.stringify(cells)
    let row = this.#rows.get(key)
    if (row === undefined) {
      if (this.#rows.size >= MAX_ROWS) { this.overflow++; return }
      this.#rows.set(key, row = { cells, count: 0, first: Infinity, last: -Infinity, example: '' })
    }
    row.count++
    if (time !== undefined) { row.first = Math.min(row.first, time); row.last = Math.max(row.last, time) }
    if (row.example === '' && example !== '') row.example = cut(example, 200)
  }

  /** Largest count first. */
  rows (): Row[] {
    return [...this.#rows.values()].sort((a, b) => b.count - a.count || a.cells.join().localeCompare(b.cells.join()))
  }
}

export class Refusals {
  readonly destinations = new Tally()
  readonly calls = new Tally()
  readonly admin = new Tally()

  /** Takes the records that are refusals; ignores the rest. */
  add (rec: AuditRecord, time: number | undefined): void {
    if (rec.event === 'egress.denied') {
      const host = str(rec.host) ?? ''
      const port = typeof rec.port === 'number' ? String(rec.port) : ''
      const asked = [str(rec.method), str(rec.requested) ?? str(rec.path), str(rec.tool) === undefined ? undefined : `tool ${str(rec.tool)}`]
      this.destinations.add([host, port, str(rec.reason) ?? '?'], time, asked.filter((s) => s !== undefined && s !== '').join(' '))
    } else if (rec.event === 'credential.used' && typeof rec.outcome === 'string' && rec.outcome !== '') {
      const example = [str(rec.host), str(rec.path)].filter((s) => s !== undefined).join('')
      this.calls.add([str(rec.tool) ?? '?', rec.outcome, str(rec.method) ?? '?', str(rec.placeholder) ?? ''], time, example)
    } else if (rec.event === 'admin.denied') {
      const client = str(rec.client) ?? '?'
      // The port changes with every connection; the address is who asked.
      const address = client.replace(/:\d+$/, '')
      this.admin.add([str(rec.route) ?? '?', str(rec.reason) ?? '?', address], time, str(rec.tool) === undefined ? '' : `tool ${str(rec.tool)}`)
    }
  }

  get total (): number { return this.destinations.total + this.calls.total + this.admin.total }
}

const CLOUD_METADATA = new Set(['169.254.169.254', '169.254.170.2', 'fd00:ec2::254', '100.100.100.200', 'metadata.google.internal', 'metadata'])

/** Why a denied host deserves a second look: a cloud metadata endpoint, or an address no agent should reach. */
export function hostNote (host: string): string {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (CLOUD_METADATA.has(h)) return 'cloud metadata endpoint'
  if (ipFamily(h) === 0) return ''
  const cls = classifyIp(h)
  return cls === 'public' ? 'IP literal' : `${cls} address`
}

function table (id: string, head: string[], rows: string[][], tally: Tally): string {
  const shown = Math.min(rows.length, SHOWN)
  const note = rows.length > shown || tally.overflow > 0
    ? `the ${shown} most frequent of ${rows.length}${tally.overflow > 0 ? '+' : ''} rows` +
      (tally.overflow > 0 ? `; ${tally.overflow} events past the first ${MAX_ROWS} distinct rows are counted only in the total` : '')
    : ''
  return dataTable(id, head, rows.slice(0, SHOWN), note)
}

export function renderRefusals (r: Refusals): string {
  const out = ['<h2 id="refusals">Refusals</h2>']
  if (r.total === 0) return out[0] + '<p>Nothing was refused: no egress.denied, admin.denied, or call refused before its tool.</p>'
  out.push(`<p>${r.destinations.total} destination${r.destinations.total === 1 ? '' : 's'} denied, ${r.calls.total} call${r.calls.total === 1 ? '' : 's'} ` +
    `refused before reaching a tool, ${r.admin.total} admin request${r.admin.total === 1 ? '' : 's'} refused.</p>`)
  if (r.destinations.total > 0) {
    const rows = r.destinations.rows()
    out.push('<h3>Denied destinations</h3>')
    out.push(barChart('denied', 'egress.denied by host and reason', rows.slice(0, 15).map((x) => ({
      label: `${x.cells[0] === '' ? '(no host)' : x.cells[0]!} (${x.cells[2]!})`, value: x.count, color: hostNote(x.cells[0]!) === '' ? '#ff7f0e' : '#d62728',
    }))))
    out.push(table('denied', ['host', 'port', 'reason', 'count', 'first', 'last', 'asked for', 'note'], rows.map((x) => {
      const note = hostNote(x.cells[0]!)
      return [html(cut(x.cells[0]!, 120)), html(x.cells[1]!), html(cut(x.cells[2]!, 60)), String(x.count), clock(x.first), clock(x.last),
        html(x.example), note === '' ? '' : `<b class="bad">${html(note)}</b>`]
    }), r.destinations))
  }
  if (r.calls.total > 0) {
    out.push('<h3>Calls refused before their tool</h3>')
    out.push(table('refused-calls', ['tool', 'outcome', 'method', 'placeholder', 'count', 'first', 'last', 'example'], r.calls.rows().map((x) =>
      [html(cut(x.cells[0]!, 60)), `<b>${html(cut(x.cells[1]!, 60))}</b>`, html(cut(x.cells[2]!, 20)), html(cut(x.cells[3]!, 20)), String(x.count),
        clock(x.first), clock(x.last), html(x.example)]), r.calls))
  }
  if (r.admin.total > 0) {
    out.push('<h3>Admin requests refused</h3>')
    out.push(table('admin-denied', ['route', 'reason', 'client', 'count', 'first', 'last', 'detail'], r.admin.rows().map((x) =>
      [html(cut(x.cells[0]!, 20)), html(cut(x.cells[1]!, 40)), html(cut(x.cells[2]!, 60)), String(x.count), clock(x.first), clock(x.last),
        html(x.example)]), r.admin))
  }
  return out.join('\n')
}
