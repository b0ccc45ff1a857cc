import {
  describeSkipped, describeUnsealed, esc, parseVerbArgs, readRecords, str,
  type AuditIo, type AuditRecord, type InputCounts,
} from './input.js'
import { INVENTORY_USAGE as USAGE } from './usage.js'

/**
 * `sidekey audit inventory FILE…`: what inventory mode (`egress.unmatched: inventory`) saw, per destination and
 * credential placement: the kind of credential, how many distinct ones (by fingerprint), from how many instances,
 * in how many calls. `--yaml` turns it into a starter config: one tool per destination with the observed placement
 * and a `file` issuer whose path is to be filled in. Streams; distinct fingerprints are counted up to MAX_DISTINCT.
 *
 * @example
 *   const inv = new InventoryUsage()
 *   for await (const rec of input.records(lines)) inv.add(rec)
 *   process.stdout.write(formatInventory(inv.result(input.counts)))
 */

export interface PlacementRow {
  /** `authorization Bearer`, `basic`, `header x-api-key`, `query key`, or `-` (no credential seen). */
  placement: string
  kind: string
  /** Distinct fingerprints (at most MAX_DISTINCT counted). */
  credentials: number
  instances: number
  calls: number
}

export interface Destination {
  /** `https://api.example.com`, with the port when not the scheme's default. */
  destination: string
  scheme: string
  host: string
  port: number
  calls: number
  instances: number
  placements: PlacementRow[]
}

export interface InventoryReport {
  destinations: Destination[]
  /** More than one means instances fingerprint with different keys: their credentials cannot be told apart. */
  fingerprint_keys: number
  input: InputCounts
}

const MAX_DISTINCT = 10_000
const MAX_DESTINATIONS = 10_000

interface PlacementAcc {
  placement: string, kind: string, fingerprints: Set<string>, instances: Set<string>, calls: number
}
interface DestAcc {
  scheme: string
  host: string
  port: number
  calls: number
  instances: Set<string>
  placements: Map<string, PlacementAcc>
}

export class InventoryUsage {
  readonly #dests = new Map<string, DestAcc>()
  readonly #keys = new Set<string>()
  /** Destinations beyond MAX_DESTINATIONS: counted, not listed. */
  overflow = 0

  add (rec: AuditRecord): void {
    if (rec.event !== 'egress.inventory') return
    const host = str(rec.host)
    const port = typeof rec.port === 'number' ? rec.port : undefined
    if (host === undefined || port === undefined) return
    const scheme = rec.scheme === 'http' ? 'http' : 'https'
    const id = `${scheme}://${host}:${port}`
    let d = this.#dests.get(id)
    if (d === undefined) {
      if (this.#dests.size >= MAX_DESTINATIONS) { this.overflow++; return }
      d = { scheme, host, port, calls: 0, instances: new Set(), placements: new Map() }
      this.#dests.set(id, d)
    }
    const instance = str(rec.instance_id) ?? ''
    d.calls++
    d.instances.add(instance)
    const key = str(rec.fingerprint_key)
    if (key !== undefined && this.#keys.size < 100) this.#keys.add(key)
    const carried = Array.isArray(rec.credentials) ? rec.credentials as unknown[] : []
    const seen = new Set<string>()
    for (const c of carried) {
      if (c === null || typeof c !== 'object') continue
      const cred = c as Record<string, unknown>
      const placement = placementName(cred)
      const kind = str(cred.kind) ?? 'opaque'
      const k = `${placement}\n${kind}`
      const p = this.#placement(d, k, placement, kind)
      const fp = str(cred.fingerprint)
      if (fp !== undefined && p.fingerprints.size < MAX_DISTINCT) p.fingerprints.add(fp)
      p.instances.add(instance)
      // A request carrying the same placement twice is one call.
      if (!seen.has(k)) { seen.add(k); p.calls++ }
    }
    if (seen.size === 0) {
      const p = this.#placement(d, '-', '-', '-')
      p.instances.add(instance)
      p.calls++
    }
  }

  result (input: InputCounts): InventoryReport {
    const sorted = [...this.#dests.values()]
      .sort((a, b) => b.calls - a.calls || a.host.localeCompare(b.host) || a.port - b.port)
    const destinations = sorted.map((d): Destination => ({
      destination: `${d.scheme}://${d.host.includes(':') ? `[${d.host}]` : d.host}` +
        (d.port === (d.scheme === 'http' ? 80 : 443) ? '' : `:${d.port}`),
      scheme: d.scheme,
      host: d.host,
      port: d.port,
      calls: d.calls,
      instances: d.instances.size,
      placements: [...d.placements.values()].sort((a, b) => b.calls - a.calls || a.placement.localeCompare(b.placement))
        .map((p) => ({
          placement: p.placement,
          kind: p.kind,
          credentials: p.fingerprints.size,
          instances: p.instances.size,
          calls: p.calls,
        })),
    }))
    return { destinations, fingerprint_keys: this.#keys.size, input }
  }

  #placement (d: DestAcc, k: string, placement: string, kind: string): PlacementAcc {
    let p = d.placements.get(k)
    if (p === undefined) {
      p = { placement, kind, fingerprints: new Set(), instances: new Set(), calls: 0 }
      d.placements.set(k, p)
    }
    return p
  }
}

function placementName (c: Record<string, unknown>): string {
  const placement = str(c.placement) ?? '?'
  const name = str(c.name) ?? ''
  switch (placement) {
    case 'authorization': return `authorization ${str(c.scheme) ?? '(no scheme)'}`
    case 'basic': return 'basic'
    default: return `${placement} ${name}`
  }
}

/** The table: destination, placement, kind, distinct credentials, instances, calls. Trail text is escaped. */
export function formatInventory (r: InventoryReport): string {
  const rows: string[][] = [['destination', 'placement', 'kind', 'credentials', 'instances', 'calls']]
  for (const d of r.destinations) {
    d.placements.forEach((p, i) => rows.push([
      i === 0 ? esc(d.destination) : '',
      esc(p.placement),
      esc(p.kind),
      p.placement === '-' ? '-' : String(p.credentials),
      String(p.instances),
      String(p.calls),
    ]))
  }
  const calls = r.destinations.reduce((n, d) => n + d.calls, 0)
  const n = r.destinations.length
  const head = `sidekey audit inventory: ${n} destination${n === 1 ? '' : 's'}, ${calls} calls` +
    (r.fingerprint_keys > 1
      ? `; fingerprints from ${r.fingerprint_keys} different keys: the same credential seen by instances with ` +
        'different keys counts more than once'
      : '') +
    (r.input.skipped > 0 ? `; ${describeSkipped(r.input)}` : '')
  if (rows.length === 1) return head + '\n(no egress.inventory events: is egress.unmatched: inventory on?)\n'
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const lines = rows.map((row) =>
    row.map((c, i) => i === row.length - 1 ? c : c.padEnd(widths[i]!)).join('  ').trimEnd())
  return [head, '', ...lines].join('\n') + '\n'
}

/** Host names and addresses as a tool's match.host takes them; anything else from the trail is not copied into YAML. */
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*$/
const HEADER_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/
const PARAM_NAME = /^[A-Za-z0-9_.~-]{1,64}$/
const SCHEME = /^[A-Za-z][A-Za-z0-9-]{0,31}$/

/**
 * A starter config: per destination that carried a credential, a `file` issuer (path to fill in) and a tool with
 * the placement seen most. It passes `sidekey check` once each path names a file holding the credential.
 */
export function inventoryYaml (r: InventoryReport): string {
  const issuers: string[] = []
  const tools: string[] = []
  const notes: string[] = []
  const used = new Set<string>()
  for (const d of r.destinations) {
    const top = d.placements.find((p) => p.placement !== '-')
    const where = esc(d.destination)
    if (top === undefined) {
      notes.push(`# ${where}: ${d.calls} calls, no credential seen (no tool needed, or it authenticates another way)`)
      continue
    }
    if (!HOST.test(d.host)) { notes.push(`# ${where}: not a host name a tool can match; add it by hand`); continue }
    if (d.scheme === 'http') {
      notes.push(`# ${where}: plain HTTP carries the credential in clear; ` +
        'move the agent to https before giving it a tool')
      continue
    }
    const inject = injectFor(top.placement)
    if (inject === undefined) {
      notes.push(`# ${where}: placement ${esc(top.placement)} cannot be written as a tool; add it by hand`)
      continue
    }
    let name = d.port === 443 ? d.host : `${d.host}-${d.port}`
    for (let i = 2; used.has(name); i++) name = `${d.host}-${i}`
    used.add(name)
    const others = d.placements.filter((p) => p !== top && p.placement !== '-')
      .map((p) => `${esc(p.placement)} (${esc(p.kind)}, ${p.calls} calls)`)
    issuers.push(`  ${name}:`, '    type: file', `    path: /run/secrets/sidekey/${name}   ` +
      `# FILL IN: a file holding the credential (${esc(top.kind)}, ${top.credentials} distinct seen)`)
    tools.push(`  ${name}:`, `    # ${d.calls} calls from ${d.instances} instance${d.instances === 1 ? '' : 's'}; ` +
      `${esc(top.placement)} seen in ${top.calls}` + (others.length > 0 ? `; also: ${others.join(', ')}` : ''))
    const port = d.port === 443 ? '' : `, port: ${d.port}`
    tools.push(`    match: { host: ${d.host}${port} }`, `    issuer: ${name}`, `    inject: ${inject}`)
  }
  const out = [
    '# A starter config from `sidekey audit inventory --yaml`: one tool per destination that carried a credential,',
    '# injected where the agent put it. Fill in each issuer path (the agent then sends a placeholder instead),',
    '# check it with `sidekey check --config FILE`, then merge it into your config.',
    'instance_id: CHANGE-ME']
  out.push(issuers.length === 0 ? 'issuers: {}' : 'issuers:', ...issuers)
  out.push(tools.length === 0 ? 'tools: {}' : 'tools:', ...tools)
  if (notes.length > 0) out.push('', '# Not turned into tools:', ...notes)
  return out.join('\n') + '\n'
}

function injectFor (placement: string): string | undefined {
  const space = placement.indexOf(' ')
  const where = space === -1 ? placement : placement.slice(0, space)
  const name = space === -1 ? undefined : placement.slice(space + 1)
  if (where === 'basic') return '{ basic: { username: FILL-IN } }   # the user name the agent sends'
  if (where === 'authorization') {
    if (name === '(no scheme)') return '{ header: Authorization, format: "{token}" }'
    return name !== undefined && SCHEME.test(name) ? `{ header: Authorization, format: "${name} {token}" }` : undefined
  }
  if (where === 'header' && name !== undefined && HEADER_NAME.test(name)) return `{ header: ${name} }`
  if (where === 'query' && name !== undefined && PARAM_NAME.test(name)) return `{ query: ${JSON.stringify(name)} }`
  return undefined
}

const VERB = 'sidekey audit inventory'

/** Exit codes: 0 done, 1 a file could not be read, 2 bad usage. */
export async function inventoryCommand (args: string[], io: AuditIo): Promise<number> {
  const parsed = parseVerbArgs(VERB, USAGE, args, { yaml: { type: 'boolean' }, json: { type: 'boolean' } }, io)
  if (typeof parsed === 'number') return parsed
  const inventory = new InventoryUsage()
  const counts = await readRecords(VERB, USAGE, parsed.files, io, (rec) => inventory.add(rec))
  if (typeof counts === 'number') return counts
  const report = inventory.result(counts)
  if (parsed.values.yaml === true) {
    io.stdout.write(inventoryYaml(report))
    if (counts.skipped > 0) io.stderr.write(`${VERB}: ${describeSkipped(counts)}\n`)
  } else io.stdout.write(parsed.values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatInventory(report))
  const unsealed = describeUnsealed(counts)
  if (unsealed !== '') io.stderr.write(`${VERB}: NOT COUNTED: ${unsealed}\n`)
  return 0
}
