import type { ToolConfig } from '../config/schema.js'
import { matcher, NAMED_METHODS, type McpKind } from '../mcp/policy.js'
import { esc, str } from './input.js'

/**
 * The MCP side of `sidekey audit scopes`: which MCP tools, resources and prompts a tool's calls named (from
 * `credential.used`'s `mcp`), beside its `mcp:` section, and the narrowest `mcp:` lists that cover what was called.
 * Refused names (`mcp_denied`) are shown, never recommended: least privilege grants what was used, not what was tried.
 */

export const MCP_KINDS: readonly McpKind[] = ['tools', 'resources', 'prompts']
/** Distinct names counted per kind; past it no list is recommended (it would not be the whole list). */
const MAX_NAMES = 1000

export type PerKind<T> = Record<McpKind, T>

export interface McpGrant {
  tools: string[]
  /** null: absent in the config, every resource (or prompt) allowed. */
  resources: string[] | null
  prompts: string[] | null
}

export interface McpUse {
  /** Names in calls that reached the MCP server, with their counts. */
  called: PerKind<Record<string, number>>
  /** Names in calls refused by `mcp:` (outcome mcp_denied) that the config still refuses. */
  denied: PerKind<Record<string, number>>
  /** More than MAX_NAMES distinct names of some kind: the counts are partial. */
  truncated: boolean
}

export interface McpJudgement {
  /** The narrowest `mcp:` lists covering what was called (only the kinds that differ from the grant). */
  recommend: Partial<PerKind<string[]>>
  /** Configured entries no call matched. */
  unused: Partial<PerKind<string[]>>
  notes: string[]
}

function mapKinds<T> (f: (kind: McpKind) => T): PerKind<T> {
  return { tools: f('tools'), resources: f('resources'), prompts: f('prompts') }
}

/** One tool's MCP names, fed `credential.used` records. */
export class McpUsage {
  readonly #called = mapKinds(() => new Map<string, number>())
  readonly #denied = mapKinds(() => new Map<string, number>())
  #truncated = false
  #seen = false

  /** `outcome`: undefined or upstream_error for a call that went out, mcp_denied for a refused one. */
  add (mcp: unknown, outcome: string | undefined): void {
    const sent = outcome === undefined || outcome === 'upstream_error'
    const into = outcome === 'mcp_denied' ? this.#denied : sent ? this.#called : undefined
    if (into === undefined) return
    for (const [kind, name] of namedCalls(mcp, 0)) {
      this.#seen = true
      const counts = into[kind]
      if (counts.has(name) || counts.size < MAX_NAMES) counts.set(name, (counts.get(name) ?? 0) + 1)
      else this.#truncated = true
    }
  }

  /** null when no call named anything; `grant` drops refused names the config has allowed since. */
  finish (grant: McpGrant | null): McpUse | null {
    if (!this.#seen) return null
    return {
      called: mapKinds((kind) => sorted(this.#called[kind], () => true)),
      denied: mapKinds((kind) => sorted(this.#denied[kind], stillRefused(grant, kind))),
      truncated: this.#truncated,
    }
  }
}

function sorted (m: Map<string, number>, keep: (name: string) => boolean): Record<string, number> {
  return Object.fromEntries([...m].filter(([name]) => keep(name)).sort(([a], [b]) => a.localeCompare(b)))
}

/** Whether the config refuses a name today (without a config: every refused name is shown). */
function stillRefused (grant: McpGrant | null, kind: McpKind): (name: string) => boolean {
  if (grant === null) return () => true
  const entries = grant[kind]
  if (entries === null) return () => false
  const allowed = matcher(entries)
  return (name) => !allowed.allows(name)
}

/** The (kind, name) pairs a logged `mcp` value (untrusted: read field by field) names, batches flattened. */
function namedCalls (mcp: unknown, depth: number): Array<[McpKind, string]> {
  if (typeof mcp !== 'object' || mcp === null || depth > 1) return []
  const m = mcp as Record<string, unknown>
  if (Array.isArray(m.batch)) return m.batch.flatMap((member) => namedCalls(member, depth + 1))
  const method = str(m.method)
  const name = str(m.name)
  const named = method === undefined ? undefined : NAMED_METHODS[method]
  return named === undefined || name === undefined ? [] : [[named.kind, name]]
}

export function mcpGrant (tool: ToolConfig): McpGrant | null {
  if (tool.mcp === undefined) return null
  return { tools: [...tool.mcp.tools], resources: tool.mcp.resources ?? null, prompts: tool.mcp.prompts ?? null }
}

/**
 * For a tool that was called: per kind, the names called (when the grant lists something else, or nothing), the
 * entries never called, the names refused. A tool without `mcp:` whose paths look like an MCP endpoint is told
 * how to find out which MCP tools it calls.
 */
export function judgeMcp (
  grant: McpGrant | null, use: McpUse | null, shapes: readonly string[], window: string
): McpJudgement {
  const out: McpJudgement = { recommend: {}, unused: {}, notes: [] }
  if (grant === null && use === null) {
    if (shapes.some((s) => s.split('/').includes('mcp'))) {
      out.notes.push('its paths look like an MCP endpoint: add `mcp: { tools: [...] }` so the trail names the MCP ' +
        'tools it calls, then run this again for the list')
    }
    return out
  }
  for (const kind of MCP_KINDS) {
    const configured = grant?.[kind] ?? null
    const called = Object.keys(use?.called[kind] ?? {}).sort()
    const unused = configured?.filter((entry) => !called.some((name) => matcher([entry]).allows(name))) ?? []
    if (unused.length > 0) {
      out.unused[kind] = unused
      const names = unused.map(esc).join(', ')
      out.notes.push(`mcp.${kind} entries never called ${window}: ${names}: unused, consider removing`)
    }
    const denied = counts(use?.denied[kind] ?? {})
    if (denied !== '') {
      out.notes.push(`mcp.${kind} refused (mcp_denied): ${denied}; add one only if the agent needs it`)
    }
    if (use?.truncated === true || (configured === null && called.length === 0)) continue
    // A name holding `*` would be read back as a glob, wider than the call: it is left for the operator to list.
    const exact = called.filter((name) => !name.includes('*'))
    if (exact.length < called.length) out.notes.push(`mcp.${kind}: a called name holds '*'; list it by hand`)
    if (configured === null || !sameNames(configured, exact)) out.recommend[kind] = exact
  }
  if (use?.truncated === true) out.notes.push(`over ${MAX_NAMES} distinct MCP names of a kind: no mcp list recommended`)
  return out
}

const counts = (rec: Record<string, number>): string => Object.entries(rec).map(([k, n]) => `${esc(k)}×${n}`).join(' ')

function sameNames (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().every((x, i) => x === b[i])
}

/** The YAML lines of a recommended `mcp:` (under a tool, indented four spaces). */
export function mcpPatchLines (recommend: Partial<PerKind<string[]>>, scalar: (s: string) => string): string[] {
  const kinds = MCP_KINDS.filter((k) => recommend[k] !== undefined)
  if (kinds.length === 0) return []
  return ['    mcp:', ...kinds.map((k) => `      ${k}: [${recommend[k]!.map(scalar).join(', ')}]`)]
}

/** The report's lines for a tool's MCP use. */
export function formatMcpUse (use: McpUse | null, recommend: Partial<PerKind<string[]>>): string[] {
  const out: string[] = []
  if (use !== null) {
    for (const kind of MCP_KINDS) {
      const called = counts(use.called[kind])
      const denied = counts(use.denied[kind])
      if (called !== '') out.push(`  mcp        ${kind} ${called}`)
      if (denied !== '') out.push(`  mcp denied ${kind} ${denied}`)
    }
  }
  const kinds = MCP_KINDS.filter((k) => recommend[k] !== undefined)
  const lists = kinds.map((k) => `mcp.${k}: [${recommend[k]!.map(esc).join(', ')}]`)
  if (kinds.length > 0) out.push(`  recommend  ${lists.join('  ')}`)
  return out
}
