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

/** The parts that are present, space-separated. */
const words = (...parts: Array<string | undefined>): string =>
  parts.filter((p) => p !== undefined && p !== '').join(' ')

export class Refusals {
  readonly destinations = new Tally()
  readonly calls = new Tally()
  readonly admin = new Tally()

  /** Takes the records that are refusals; ignores the rest. */
  add (rec: AuditRecord, time: number | undefined): void {
    const tool = str(rec.tool) === undefined ? undefined : `tool ${str(rec.tool)}`
    if (rec.event === 'egress.denied') {
      const port = typeof rec.port === 'number' ? String(rec.port) : ''
      const asked = words(str(rec.method), str(rec.requested) ?? str(rec.path), tool)
      this.destinations.add([str(rec.host) ?? '', port, str(rec.reason) ?? '?'], time, asked)
    } else if (rec.event === 'credential.used' && typeof rec.outcome === 'string' && rec.outcome !== '') {
      const cells = [str(rec.tool) ?? '?', rec.outcome, str(rec.method) ?? '?', str(rec.placeholder) ?? '']
      this.calls.add(cells, time, (str(rec.host) ?? '') + (str(rec.path) ?? ''))
    } else if (rec.event === 'admin.denied') {
      // The port changes with every connection; the address is who asked.
      const address = (str(rec.client) ?? '?').replace(/:\d+$/, '')
      this.admin.add([str(rec.route) ?? '?', str(rec.reason) ?? '?', address], time, words(tool))
    }
  }

  get total (): number { return this.destinations.total + this.calls.total + this.admin.total }
}

const CLOUD_METADATA = new Set([
  '169.254.169.254', '169.254.170.2', 'fd00:ec2::254', '100.100.100.200', 'metadata.google.internal', 'metadata',
])

/** Why a denied host deserves a second look: a cloud metadata endpoint, or an address no agent should reach. */
export function hostNote (host: string): string {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (CLOUD_METADATA.has(h)) return 'cloud metadata endpoint'
  if (ipFamily(h) === 0) return ''
  const cls = classifyIp(h)
  return cls === 'public' ? 'IP literal' : `${cls} address`
}

/**
 * One tally as a table, most frequent first: its cells (each cut to its column's width), then count, first and
 * last time, and the example under `exampleHead`; `extra` adds a last column from a row's cells.
 */
function table (id: string, columns: ReadonlyArray<readonly [string, number]>, exampleHead: string, tally: Tally,
  extra?: { head: string, cell: (cells: readonly string[]) => string }): string {
  const rows = tally.rows()
  const shown = rows.slice(0, SHOWN)
  const note = rows.length > shown.length || tally.overflow > 0
    ? `the ${shown.length} most frequent of ${rows.length}${tally.overflow > 0 ? '+' : ''} rows` +
      (tally.overflow > 0 ? `; ${tally.overflow} events past ${MAX_ROWS} distinct rows only in the total` : '')
    : ''
  const last = extra === undefined ? [] : [extra.head]
  const head = [...columns.map(([h]) => h), 'count', 'first', 'last', exampleHead, ...last]
  return dataTable(id, head, shown.map((x) => [
    ...x.cells.map((c, i) => html(cut(c, columns[i]![1]))),
    String(x.count), clock(x.first), clock(x.last), html(x.example),
    ...(extra === undefined ? [] : [extra.cell(x.cells)]),
  ]), note)
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`

export function renderRefusals (r: Refusals): string {
  const out = ['<h2 id="refusals">Refusals</h2>']
  if (r.total === 0) {
    return out[0] + '<p>Nothing was refused: no egress.denied, admin.denied, or call refused before its tool.</p>'
  }
  out.push(`<p>${plural(r.destinations.total, 'destination')} denied, ` +
    `${plural(r.calls.total, 'call')} refused before ` +
    `reaching a tool, ${plural(r.admin.total, 'admin request')} refused.</p>`)
  if (r.destinations.total > 0) {
    out.push('<h3>Denied destinations</h3>')
    out.push(barChart('denied', 'egress.denied by host and reason', r.destinations.rows().slice(0, 15).map((x) => ({
      label: `${x.cells[0] === '' ? '(no host)' : x.cells[0]!} (${x.cells[2]!})`,
      value: x.count,
      color: hostNote(x.cells[0]!) === '' ? '#ff7f0e' : '#d62728',
    }))))
    out.push(table('denied', [['host', 120], ['port', 6], ['reason', 60]], 'asked for', r.destinations, {
      head: 'note',
      cell: ([host]) => { const note = hostNote(host!); return note === '' ? '' : `<b class="bad">${html(note)}</b>` },
    }))
  }
  if (r.calls.total > 0) {
    out.push('<h3>Calls refused before their tool</h3>')
    const columns = [['tool', 60], ['outcome', 60], ['method', 20], ['placeholder', 20]] as const
    out.push(table('refused-calls', columns, 'example', r.calls))
  }
  if (r.admin.total > 0) {
    out.push('<h3>Admin requests refused</h3>')
    out.push(table('admin-denied', [['route', 20], ['reason', 40], ['client', 60]], 'detail', r.admin))
  }
  return out.join('\n')
}
