import { Counter, type Registry } from 'prom-client'
import type { CredentialUsed, McpCallAudit } from '../audit/events.js'

/** The `mcp_tool` label of a name no entry of the tool's `mcp.tools` allows (a refused call's name). */
export const MCP_OTHER = '_other'
/** forwarded: sent to the server; mcp_denied: refused by `mcp.tools`; refused: by another rule (budget, lock...). */
export const MCP_OUTCOMES = ['forwarded', 'mcp_denied', 'refused', 'upstream_error'] as const

/** For a tool with `mcp:`, the config entry allowing an MCP tool name (src/mcp/policy.ts `mcpToolEntries`). */
export type McpToolEntries = ReadonlyMap<string, (name: string) => string | undefined>

/**
 * sidekey_mcp_calls_total{tool, mcp_tool, outcome}: MCP `tools/call`s by the tool's config entry that allowed them
 * (the name when listed, the glob when a glob did, `_other` for everything else). The agent picks the names it
 * calls; the label only takes values the config wrote, so a flood of invented names adds no series.
 */
export class McpCallMetrics {
  #entries: McpToolEntries = new Map()
  readonly #calls: Counter<'tool' | 'mcp_tool' | 'outcome'>

  constructor (registers: Registry[]) {
    this.#calls = new Counter({
      name: 'sidekey_mcp_calls_total',
      help: 'MCP tools/call requests by tool, the mcp.tools entry allowing them (_other: none) and outcome.',
      labelNames: ['tool', 'mcp_tool', 'outcome'],
      registers,
    })
  }

  /** On start and reload. Series of tools or entries dropped from config stay, so their counters do not reset. */
  setTools (entries: McpToolEntries): void {
    this.#entries = entries
  }

  observe (e: CredentialUsed): void {
    const entryOf = this.#entries.get(e.tool)
    if (entryOf === undefined || e.mcp === undefined) return
    const outcome = e.outcome === undefined ? 'forwarded' : outcomeLabel(e.outcome)
    const tool = e.tool
    for (const name of toolCalls(e.mcp)) this.#calls.inc({ tool, mcp_tool: entryOf(name) ?? MCP_OTHER, outcome })
  }
}

function outcomeLabel (outcome: string): string {
  return outcome === 'mcp_denied' || outcome === 'upstream_error' ? outcome : 'refused'
}

/** The MCP tool names a call (or each member of a batch, which shares the batch's outcome) calls. */
function toolCalls (call: McpCallAudit): string[] {
  if (call.batch !== undefined) return call.batch.flatMap(toolCalls)
  return call.method === 'tools/call' && call.name !== undefined ? [call.name] : []
}
