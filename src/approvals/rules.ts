import type { ToolConfig } from '../config/schema.js'
import type { McpCall } from '../mcp/index.js'
import { matcher, type NameMatcher } from '../mcp/policy.js'

/** What the rules look at: the method, the normalised path without its query, and the MCP call when there is one. */
export interface CallShape {
  readonly method: string
  readonly path: string
  readonly mcp?: McpCall | undefined
}

interface CompiledRule {
  readonly methods?: ReadonlySet<string>
  readonly pathPrefix?: string
  readonly mcpTools?: NameMatcher
}

const compiled = new WeakMap<ToolConfig, readonly CompiledRule[]>()

/**
 * Does this call wait for approval? A rule matches when every condition it names holds; an `mcp_tools` rule matches
 * a `tools/call` of a listed name, alone or anywhere in a batch (the batch is held whole: its hash covers it all).
 */
export function needsApproval (tool: ToolConfig, call: CallShape): boolean {
  if (tool.approve === undefined) return false
  return rulesOf(tool).some((rule) => matches(rule, call))
}

function matches (rule: CompiledRule, call: CallShape): boolean {
  if (rule.methods !== undefined && !rule.methods.has(call.method)) return false
  if (rule.pathPrefix !== undefined && !call.path.startsWith(rule.pathPrefix)) return false
  const tools = rule.mcpTools
  return tools === undefined || (call.mcp !== undefined && toolCalls(call.mcp).some((name) => tools.allows(name)))
}

function toolCalls (call: McpCall): string[] {
  if (call.batch !== undefined) return call.batch.flatMap(toolCalls)
  return call.method === 'tools/call' && call.name !== undefined ? [call.name] : []
}

function rulesOf (tool: ToolConfig): readonly CompiledRule[] {
  let rules = compiled.get(tool)
  if (rules === undefined) {
    rules = (tool.approve ?? []).map((r) => ({
      ...(r.methods === undefined ? {} : { methods: new Set(r.methods) }),
      ...(r.path_prefix === undefined ? {} : { pathPrefix: r.path_prefix }),
      ...(r.mcp_tools === undefined ? {} : { mcpTools: matcher(r.mcp_tools) }),
    }))
    compiled.set(tool, rules)
  }
  return rules
}
