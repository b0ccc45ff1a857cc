import {
  AuditInput, checkInputs, describeSkipped, describeUnsealed, esc, parseTime, readFailed, readLines,
  type AuditIo, type InputCounts,
} from './input.js'
import { AUDIT_USAGE as USAGE } from './usage.js'

/**
 * `sidekey audit FILE...`: what an incident responder runs first. Reads audit JSON lines from any number of
 * instances (files, `.gz` files or stdin) and sums them up per instance and tool: uses, credentials seen, the age
 * of credentials at use (joined to `credential.issued` by credential_id, across all inputs), status codes,
 * anomalies and refresh failures. Lines that are not JSON objects are counted as skipped, never fatal.
 *
 * @example
 *   const summary = await summarise(lines)
 *   process.stdout.write(formatSummary(summary))
 */

export interface AgeDistribution {
  /** Uses whose credential's `credential.issued` was found. */
  known: number
  /** Uses with a credential_id that no `credential.issued` line names. */
  unknown: number
  /** Seconds; null when no use is known. */
  p50: number | null
  p90: number | null
  max: number | null
}

export interface ToolSummary {
  uses: number
  /** Distinct credential ids used. */
  credentials: number
  /** The first MAX_IDS of them, sorted. */
  credential_ids: string[]
  age_at_use_seconds: AgeDistribution
  /** Response status → count (0: no response). */
  status: Record<string, number>
  /** Refusals before the upstream (method_denied, credential_unavailable, ...) → count. */
  outcomes: Record<string, number>
  /** Uses where the agent sent something other than the placeholder. */
  unexpected_credential: number
  anomalies: Record<string, number>
  issued: number
  refresh_failures: number
  first_use: string | null
  last_use: string | null
}

export interface InstanceSummary {
  events: number
  first: string | null
  last: string | null
  egress_denied: number
  /** All anomalies of the instance by kind, including those without a tool and those rate-limited out of the log. */
  anomalies: Record<string, number>
  tools: Record<string, ToolSummary>
}

/** What was read (lines, events, other log lines, and what was skipped and why: input.ts), and per instance. */
export interface AuditSummary extends InputCounts {
  instances: Record<string, InstanceSummary>
}

export const NO_INSTANCE = '(none)'
const MAX_IDS = 50

interface ToolAcc {
  summary: ToolSummary
  ids: Set<string>
  /** Parallel: time of use (ms) and credential id, joined to issued_at after all input is read. */
  useTimes: number[]
  useIds: string[]
  firstMs: number
  lastMs: number
}

interface InstanceAcc { summary: InstanceSummary, tools: Map<string, ToolAcc>, firstMs: number, lastMs: number }

export async function summarise (lines: AsyncIterable<string> | Iterable<string>): Promise<AuditSummary> {
  const input = new AuditInput()
  const instances = new Map<string, InstanceAcc>()
  const issuedAt = new Map<string, number>()

  for await (const rec of input.records(lines)) {
    const inst = instanceAcc(instances, typeof rec.instance_id === 'string' ? rec.instance_id : NO_INSTANCE)
    const time = parseTime(rec.time)
    inst.summary.events++
    if (time !== undefined) {
      if (time < inst.firstMs) inst.firstMs = time
      if (time > inst.lastMs) inst.lastMs = time
    }
    const tool = typeof rec.tool === 'string' ? rec.tool : undefined
    switch (rec.event) {
      case 'credential.used': {
        const t = toolAcc(inst, tool ?? NO_INSTANCE)
        const s = t.summary
        s.uses++
        const code = String(typeof rec.status === 'number' ? rec.status : 0)
        s.status[code] = (s.status[code] ?? 0) + 1
        if (typeof rec.outcome === 'string') s.outcomes[rec.outcome] = (s.outcomes[rec.outcome] ?? 0) + 1
        if (rec.placeholder === 'unexpected') s.unexpected_credential++
        if (time !== undefined) {
          if (time < t.firstMs) t.firstMs = time
          if (time > t.lastMs) t.lastMs = time
        }
        if (typeof rec.credential_id === 'string') {
          t.ids.add(rec.credential_id)
          if (time !== undefined) {
            t.useTimes.push(time)
            t.useIds.push(rec.credential_id)
          }
        }
        break
      }
      case 'credential.issued': {
        if (tool !== undefined) toolAcc(inst, tool).summary.issued++
        const at = parseTime(rec.issued_at) ?? time
        if (typeof rec.credential_id === 'string' && at !== undefined) {
          const prev = issuedAt.get(rec.credential_id)
          if (prev === undefined || at < prev) issuedAt.set(rec.credential_id, at)
        }
        break
      }
      case 'credential.refresh_failed':
        if (tool !== undefined) toolAcc(inst, tool).summary.refresh_failures++
        break
      case 'egress.denied':
        inst.summary.egress_denied++
        break
      case 'anomaly': {
        const kind = typeof rec.kind === 'string' ? rec.kind : 'unknown'
        // A rate-limit summary line stands for `suppressed` anomalies.
        const n = typeof rec.suppressed === 'number' && rec.suppressed > 0 ? rec.suppressed : 1
        inst.summary.anomalies[kind] = (inst.summary.anomalies[kind] ?? 0) + n
        if (tool !== undefined) {
          const a = toolAcc(inst, tool).summary.anomalies
          a[kind] = (a[kind] ?? 0) + n
        }
        break
      }
      default: break
    }
  }

  const out: AuditSummary = { ...input.counts, instances: {} }
  for (const [name, inst] of [...instances].sort(([a], [b]) => a.localeCompare(b))) {
    inst.summary.first = iso(inst.firstMs)
    inst.summary.last = iso(inst.lastMs)
    for (const [toolName, t] of [...inst.tools].sort(([a], [b]) => a.localeCompare(b))) {
      finishTool(t, issuedAt)
      inst.summary.tools[toolName] = t.summary
    }
    out.instances[name] = inst.summary
  }
  return out
}

const iso = (ms: number): string | null => Number.isFinite(ms) ? new Date(ms).toISOString() : null

function instanceAcc (map: Map<string, InstanceAcc>, name: string): InstanceAcc {
  let acc = map.get(name)
  if (acc === undefined) {
    acc = {
      summary: { events: 0, first: null, last: null, egress_denied: 0, anomalies: {}, tools: {} },
      tools: new Map(),
      firstMs: Infinity,
      lastMs: -Infinity,
    }
    map.set(name, acc)
  }
  return acc
}

function toolAcc (inst: InstanceAcc, name: string): ToolAcc {
  let acc = inst.tools.get(name)
  if (acc === undefined) {
    acc = {
      summary: {
        uses: 0,
        credentials: 0,
        credential_ids: [],
        age_at_use_seconds: { known: 0, unknown: 0, p50: null, p90: null, max: null },
        status: {},
        outcomes: {},
        unexpected_credential: 0,
        anomalies: {},
        issued: 0,
        refresh_failures: 0,
        first_use: null,
        last_use: null,
      },
      ids: new Set(),
      useTimes: [],
      useIds: [],
      firstMs: Infinity,
      lastMs: -Infinity,
    }
    inst.tools.set(name, acc)
  }
  return acc
}

function finishTool (t: ToolAcc, issuedAt: ReadonlyMap<string, number>): void {
  const s = t.summary
  s.credentials = t.ids.size
  s.credential_ids = [...t.ids].sort().slice(0, MAX_IDS)
  s.first_use = iso(t.firstMs)
  s.last_use = iso(t.lastMs)
  const ages = new Float64Array(t.useTimes.length)
  let known = 0
  for (let i = 0; i < t.useTimes.length; i++) {
    const at = issuedAt.get(t.useIds[i]!)
    if (at === undefined) continue
    ages[known++] = Math.max(0, (t.useTimes[i]! - at) / 1000)
  }
  const sorted = ages.subarray(0, known).sort()
  s.age_at_use_seconds = {
    known,
    unknown: t.useTimes.length - known,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    max: known === 0 ? null : round(sorted[known - 1]!),
  }
}

/** Nearest-rank percentile. */
function percentile (sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null
  return round(sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!)
}

const round = (v: number): number => Math.round(v * 1000) / 1000

/** A human table per instance; every name from the log is escaped (the log is untrusted input). */
export function formatSummary (summary: AuditSummary): string {
  const out: string[] = []
  const names = Object.keys(summary.instances)
  out.push(`sidekey audit: ${names.length} instance${names.length === 1 ? '' : 's'}, ` +
    `${summary.events} events, ${summary.lines} lines` +
    (summary.skipped > 0 ? `; ${describeSkipped(summary)}` : ''))
  const unsealed = describeUnsealed(summary)
  if (unsealed !== '') out.push(`NOT COUNTED: ${unsealed}`)
  for (const name of names) {
    const inst = summary.instances[name]!
    out.push('')
    out.push(`instance ${esc(name)}  ${inst.first ?? '?'} .. ${inst.last ?? '?'}  ` +
      `events ${inst.events}  egress denied ${inst.egress_denied}`)
    const kinds = counts(inst.anomalies)
    if (kinds !== '') out.push(`  anomalies: ${kinds}`)
    const rows: string[][] = [
      ['tool', 'uses', 'creds', 'age at use p50/p90/max', 'status', 'issued', 'refresh failed', 'anomalies'],
    ]
    for (const [tool, t] of Object.entries(inst.tools)) {
      const a = t.age_at_use_seconds
      const age = a.known === 0 ? '-' : `${dur(a.p50)} / ${dur(a.p90)} / ${dur(a.max)}`
      rows.push([
        esc(tool), String(t.uses), String(t.credentials), age + (a.unknown > 0 ? ` (${a.unknown} unknown)` : ''),
        counts(t.status, '×') || '-', String(t.issued), String(t.refresh_failures), counts(t.anomalies) || '-',
      ])
    }
    if (rows.length > 1) out.push(...table(rows).map((r) => '  ' + r))
  }
  return out.join('\n') + '\n'
}

export function counts (rec: Record<string, number>, sep = ' '): string {
  return Object.entries(rec).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${esc(k)}${sep}${n}`).join(', ')
}

function dur (sec: number | null): string {
  if (sec === null) return '-'
  if (sec < 60) return `${Math.round(sec)}s`
  if (sec < 3600) return `${Math.floor(sec / 60)}m${String(Math.round(sec % 60)).padStart(2, '0')}s`
  return `${Math.floor(sec / 3600)}h${String(Math.floor((sec % 3600) / 60)).padStart(2, '0')}m`
}

export function table (rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i]!)).join('  ').trimEnd())
}

export type { AuditIo }

/**
 * The `sidekey audit` verb. Exit codes: 0 done, 1 a file could not be read, 2 bad usage.
 *
 * @example
 *   process.exitCode = await auditCommand(process.argv.slice(3), process)
 */
export async function auditCommand (args: string[], io: AuditIo): Promise<number> {
  let json = false
  const files: string[] = []
  for (const a of args) {
    if (a === '--json') json = true
    else if (a === '-h' || a === '--help') {
      io.stdout.write(USAGE)
      return 0
    } else if (a.startsWith('-') && a !== '-') {
      io.stderr.write(`sidekey audit: unknown option ${esc(a)}\n${USAGE}`)
      return 2
    } else files.push(a)
  }
  const stop = await checkInputs('sidekey audit', files, USAGE, io)
  if (stop !== undefined) return stop
  let summary: AuditSummary
  try {
    summary = await summarise(readLines(files, io.stdin))
  } catch (err) {
    return readFailed('sidekey audit', err, io)
  }
  io.stdout.write(json ? JSON.stringify(summary, null, 2) + '\n' : formatSummary(summary))
  return 0
}
