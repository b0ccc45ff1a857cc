import type { Config } from '../config/schema.js'
import { formatMcpUse, mcpGrant, McpUsage } from './mcp-scopes.js'
import type { McpGrant, McpUse, PerKind } from './mcp-scopes.js'
import { parseDuration } from '../util/duration.js'
import { pathShape } from '../secrets/path-shape.js'
import {
  describeSkipped, describeUnsealed, esc, parseTime, parseVerbArgs, readRecords, str,
  type AuditIo, type AuditRecord, type InputCounts,
} from './input.js'
import { grantablePrefix, judge, yamlPatch } from './scopes-recommend.js'
import { SCOPES_USAGE as USAGE } from './usage.js'

/**
 * `sidekey audit scopes --config FILE FILE…`: least privilege. For each tool, what the config grants (methods,
 * path_prefix, scopes) beside what the trail shows was used (methods, path shapes, the longest common path prefix,
 * status codes, last use), and a narrower config as a YAML patch. Tools whose credential is held and refreshed
 * but never used in the window are flagged. Streams: per tool, counters and at most MAX_SHAPES path shapes.
 *
 * @example
 *   const scopes = new ScopeUsage({ fromMs: Date.now() - 30 * 86_400_000 })
 *   for await (const rec of input.records(lines)) scopes.add(rec)
 *   process.stdout.write(formatScopes(scopes.result(config, input.counts)))
 */

export interface ToolGrant {
  host: string
  port: number | null
  /** null: every method. */
  methods: string[] | null
  path_prefix: string
  scopes: string[]
  issuer: string
  /** The tool's `mcp:` section; null without one. */
  mcp: McpGrant | null
}

export interface ToolUse {
  /** Uses that reached the upstream (no refusal outcome). */
  calls: number
  /** Uses refused by sidekey (method_denied, credential_unavailable, …) by outcome. */
  refused: Record<string, number>
  methods: Record<string, number>
  /** The most used path shapes, most used first (at most TOP_SHAPES). */
  path_shapes: Array<{ shape: string, calls: number }>
  /** Distinct shapes seen (counting stops at MAX_SHAPES). */
  path_shapes_distinct: number
  /** The longest common prefix of the paths called, cut at a `/` and before the first id-like segment. */
  common_prefix: string | null
  status: Record<string, number>
  last_use: string | null
  /** `credential.issued` for the tool in the window: the credential was held (and refreshed). */
  issued: number
  refresh_failures: number
  instances: number
  /** The MCP tools, resources and prompts its calls named (null: none did). */
  mcp: McpUse | null
}

export interface ToolScopes {
  tool: string
  in_config: boolean
  granted: ToolGrant | null
  used: ToolUse
  /** Narrower match settings; empty when the grant already fits what was used. */
  recommend: { methods?: string[], path_prefix?: string, mcp?: Partial<PerKind<string[]>> }
  /** Entries of `mcp:` that no call matched. */
  mcp_unused: Partial<PerKind<string[]>>
  /** Held (issued in the window, or configured) but never called in the window. */
  unused: boolean
  notes: string[]
}

export interface ScopesReport {
  /** The window: events before `from` are not counted. */
  from: string | null
  to: string | null
  tools: ToolScopes[]
  /** The recommendations as YAML to merge into the config's `tools:` ('' when there is nothing to narrow). */
  patch: string
  input: InputCounts
}

const MAX_SHAPES = 1000
const TOP_SHAPES = 20

interface Acc {
  calls: number
  refused: Map<string, number>
  methods: Map<string, number>
  shapes: Map<string, number>
  prefix: string | undefined
  status: Map<string, number>
  lastMs: number
  issued: number
  refreshFailures: number
  instances: Set<string>
  mcp: McpUsage
}

export interface ScopeUsageOptions {
  /** Events before this time (ms) are outside the window; undefined: the whole trail. */
  fromMs?: number
}

export class ScopeUsage {
  readonly #tools = new Map<string, Acc>()
  readonly #fromMs: number | undefined
  #lastMs = -Infinity

  constructor (opts: ScopeUsageOptions = {}) {
    this.#fromMs = opts.fromMs
  }

  add (rec: AuditRecord): void {
    const e = rec.event
    if (e !== 'credential.used' && e !== 'credential.issued' && e !== 'credential.refresh_failed') return
    const tool = str(rec.tool)
    if (tool === undefined) return
    const time = parseTime(rec.time)
    if (time !== undefined && this.#fromMs !== undefined && time < this.#fromMs) return
    if (time !== undefined && time > this.#lastMs) this.#lastMs = time
    const acc = this.#acc(tool)
    if (e === 'credential.issued') { acc.issued++; return }
    if (e === 'credential.refresh_failed') { acc.refreshFailures++; return }
    acc.instances.add(str(rec.instance_id) ?? '')
    const outcome = str(rec.outcome)
    if (rec.mcp !== undefined) acc.mcp.add(rec.mcp, outcome)
    if (outcome !== undefined && outcome !== 'upstream_error') {
      inc(acc.refused, outcome)
      return
    }
    acc.calls++
    inc(acc.status, String(typeof rec.status === 'number' ? rec.status : 0))
    const method = str(rec.method)
    if (method !== undefined) inc(acc.methods, method)
    if (time !== undefined && time > acc.lastMs) acc.lastMs = time
    const path = str(rec.path)
    if (path === undefined) return
    const shape = pathShape(path)
    if (acc.shapes.has(shape) || acc.shapes.size < MAX_SHAPES) inc(acc.shapes, shape)
    acc.prefix = acc.prefix === undefined ? path : commonPrefix(acc.prefix, path)
  }

  /** Joined with the config's grants (when given): every configured tool, and every tool the trail names. */
  result (config: Readonly<Config> | undefined, input: InputCounts): ScopesReport {
    const names = new Set([...Object.keys(config?.tools ?? {}), ...this.#tools.keys()])
    const tools: ToolScopes[] = []
    for (const name of [...names].sort()) {
      const cfg = config?.tools[name]
      const granted: ToolGrant | null = cfg === undefined
        ? null
        : {
            host: cfg.match.host,
            port: cfg.match.port ?? null,
            methods: cfg.match.methods === undefined ? null : [...cfg.match.methods],
            path_prefix: cfg.match.path_prefix ?? '/',
            scopes: [...cfg.scopes],
            issuer: cfg.issuer,
            mcp: mcpGrant(cfg),
          }
      tools.push(judge(name, granted, finish(this.#tools.get(name), granted), config !== undefined, this.#fromMs))
    }
    return {
      from: this.#fromMs === undefined ? null : new Date(this.#fromMs).toISOString(),
      to: Number.isFinite(this.#lastMs) ? new Date(this.#lastMs).toISOString() : null,
      tools,
      patch: yamlPatch(tools),
      input,
    }
  }

  #acc (tool: string): Acc {
    let acc = this.#tools.get(tool)
    if (acc === undefined) {
      acc = {
        calls: 0,
        refused: new Map(),
        methods: new Map(),
        shapes: new Map(),
        prefix: undefined,
        status: new Map(),
        lastMs: -Infinity,
        issued: 0,
        refreshFailures: 0,
        instances: new Set(),
        mcp: new McpUsage(),
      }
      this.#tools.set(tool, acc)
    }
    return acc
  }
}

function inc (m: Map<string, number>, k: string, n = 1): void { m.set(k, (m.get(k) ?? 0) + n) }
const record = (m: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)))

function commonPrefix (a: string, b: string): string {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i === a.length ? a : a.slice(0, i)
}

const EMPTY_USE: ToolUse = {
  calls: 0,
  refused: {},
  methods: {},
  path_shapes: [],
  path_shapes_distinct: 0,
  common_prefix: null,
  status: {},
  last_use: null,
  issued: 0,
  refresh_failures: 0,
  instances: 0,
  mcp: null,
}

function finish (acc: Acc | undefined, granted: ToolGrant | null): ToolUse {
  if (acc === undefined) return { ...EMPTY_USE }
  return {
    calls: acc.calls,
    refused: record(acc.refused),
    methods: record(acc.methods),
    path_shapes: [...acc.shapes].sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).slice(0, TOP_SHAPES)
      .map(([shape, calls]) => ({ shape, calls })),
    path_shapes_distinct: acc.shapes.size,
    common_prefix: acc.prefix === undefined ? null : grantablePrefix(acc.prefix),
    status: record(acc.status),
    last_use: Number.isFinite(acc.lastMs) ? new Date(acc.lastMs).toISOString() : null,
    issued: acc.issued,
    refresh_failures: acc.refreshFailures,
    instances: acc.instances.size,
    mcp: acc.mcp.finish(granted?.mcp ?? null),
  }
}

const counts = (rec: Record<string, number>, sep = '×'): string =>
  Object.entries(rec).map(([k, n]) => `${esc(k)}${sep}${n}`).join(' ') || '-'

/** The human report: a block per tool, then the YAML patch. Everything from the trail is escaped. */
export function formatScopes (r: ScopesReport): string {
  const out: string[] = []
  out.push(`sidekey audit scopes: ${r.tools.length} tool${r.tools.length === 1 ? '' : 's'}, ` +
    `window ${r.from ?? 'whole trail'} .. ${r.to ?? '?'}, ${r.input.events} events` +
    (r.input.skipped > 0 ? `; ${describeSkipped(r.input)}` : ''))
  const unsealed = describeUnsealed(r.input)
  if (unsealed !== '') out.push(`NOT COUNTED: ${unsealed}`)
  for (const t of r.tools) {
    const g = t.granted
    const u = t.used
    out.push('')
    const where = g === null ? '' : `  (${g.host}${g.port === null ? '' : ':' + g.port}, issuer ${g.issuer})`
    out.push(`${esc(t.tool)}${where}${t.unused ? '  UNUSED' : ''}`)
    if (g !== null) {
      const methods = g.methods === null ? 'any' : g.methods.join(',')
      out.push(`  granted    methods ${methods}  path_prefix ${g.path_prefix}  ` +
        `scopes ${g.scopes.length === 0 ? '-' : g.scopes.join(' ')}`)
    }
    out.push(`  used       ${u.calls} call${u.calls === 1 ? '' : 's'}  methods ${counts(u.methods)}  ` +
      `status ${counts(u.status)}  last ${u.last_use ?? '-'}` +
      `  issued ${u.issued}${u.refresh_failures > 0 ? `  refresh failed ${u.refresh_failures}` : ''}`)
    if (Object.keys(u.refused).length > 0) out.push(`  refused    ${counts(u.refused)}`)
    if (u.path_shapes.length > 0) {
      const distinct = u.path_shapes_distinct
      out.push(`  paths      common prefix ${esc(u.common_prefix ?? '-')}  ` +
        `(${distinct}${distinct >= MAX_SHAPES ? '+' : ''} shape${distinct === 1 ? '' : 's'})`)
      for (const s of u.path_shapes.slice(0, 8)) {
        out.push(`             ${String(s.calls).padStart(7)}  ${esc(s.shape)}`)
      }
    }
    out.push(...formatMcpUse(u.mcp, t.recommend.mcp ?? {}))
    const rec = [
      t.recommend.methods === undefined ? '' : `methods: [${t.recommend.methods.join(', ')}]`,
      t.recommend.path_prefix === undefined ? '' : `path_prefix: ${esc(t.recommend.path_prefix)}`,
    ].filter((s) => s !== '')
    if (rec.length > 0) out.push(`  recommend  ${rec.join('  ')}`)
    for (const n of t.notes) out.push(`  note       ${n}`)
  }
  out.push('')
  out.push(r.patch === ''
    ? '# nothing to narrow'
    : '# a narrower config: merge into the config file\n' + r.patch.trimEnd())
  return out.join('\n') + '\n'
}

const VERB = 'sidekey audit scopes'

/** Exit codes: 0 done, 1 a file could not be read, 2 bad usage or config. */
export async function scopesCommand (args: string[], io: AuditIo): Promise<number> {
  const options = {
    config: { type: 'string', short: 'c' }, since: { type: 'string' }, json: { type: 'boolean' },
  } as const
  const parsed = parseVerbArgs(VERB, USAGE, args, options, io)
  if (typeof parsed === 'number') return parsed
  const { values, files } = parsed
  if (typeof values.config !== 'string') {
    io.stderr.write(`${VERB}: --config FILE is required (the grants to compare with)\n${USAGE}`)
    return 2
  }
  const window = sinceWindow(typeof values.since === 'string' ? values.since : '30d')
  if (window === null) {
    io.stderr.write(`${VERB}: --since expects a duration like 30d or 12h, or all\n${USAGE}`)
    return 2
  }
  const config = await loadConfigOrReport(values.config, VERB, io)
  if (config === undefined) return 2
  const usage = new ScopeUsage(window)
  const counts = await readRecords(VERB, USAGE, files, io, (rec) => usage.add(rec))
  if (typeof counts === 'number') return counts
  const report = usage.result(config, counts)
  io.stdout.write(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatScopes(report))
  return 0
}

/** `--since 30d` → the window's start; `all` → no start; null when not a duration. */
export function sinceWindow (since: string, now = Date.now()): ScopeUsageOptions | null {
  if (since === 'all') return {}
  const ms = parseDuration(since)
  return ms === undefined ? null : { fromMs: now - ms }
}

/** The config for a report, or undefined after writing its problems (`FILE:LINE:COL: …`). */
export async function loadConfigOrReport (
  file: string, verb: string, io: AuditIo
): Promise<Readonly<Config> | undefined> {
  const { ConfigError, formatProblems, loadConfigFile } = await import('../config/load.js')
  try {
    return await loadConfigFile(file)
  } catch (err) {
    if (err instanceof ConfigError) for (const line of formatProblems(err.problems)) io.stderr.write(line + '\n')
    else io.stderr.write(`${verb}: cannot load ${esc(file)}\n`)
    return undefined
  }
}
