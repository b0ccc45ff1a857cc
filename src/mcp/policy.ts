import type { ToolConfig } from '../config/schema.js'

/** The JSON-RPC methods that name one MCP tool, resource or prompt, and where in `params` the name is. */
export const NAMED_METHODS: Readonly<Record<string, { readonly kind: McpKind, readonly field: 'name' | 'uri' }>> = {
  'tools/call': { kind: 'tools', field: 'name' },
  'prompts/get': { kind: 'prompts', field: 'name' },
  'resources/read': { kind: 'resources', field: 'uri' },
  // A subscription to a refused resource would still tell the agent when it changes.
  'resources/subscribe': { kind: 'resources', field: 'uri' },
}

/** The list methods whose answers are filtered down to what the policy allows, and the member naming each entry. */
export const LIST_METHODS: Readonly<Record<string, { readonly kind: McpKind, readonly field: 'name' | 'uri' }>> = {
  'tools/list': { kind: 'tools', field: 'name' },
  'prompts/list': { kind: 'prompts', field: 'name' },
  'resources/list': { kind: 'resources', field: 'uri' },
}

export type McpKind = 'tools' | 'resources' | 'prompts'

/** One kind's allowlist: exact names, and `*` globs (any run of characters, `/` included). */
export interface NameMatcher {
  allows (name: string): boolean
  /** The entry allowing `name`: the name itself when listed, else the first glob matching it; else undefined. */
  entry (name: string): string | undefined
}

/** What a tool's `mcp:` section allows; a kind without a matcher is not restricted. */
export interface McpPolicy {
  readonly tools: NameMatcher
  readonly resources?: NameMatcher
  readonly prompts?: NameMatcher
}

const policies = new WeakMap<ToolConfig, McpPolicy | undefined>()

/** The MCP policy of a tool, or undefined when it has no `mcp:` section (its traffic is not read). */
export function mcpPolicyOf (tool: ToolConfig): McpPolicy | undefined {
  if (tool.mcp === undefined) return undefined
  let policy = policies.get(tool)
  if (policy === undefined) {
    const { tools, resources, prompts } = tool.mcp
    policy = {
      tools: matcher(tools),
      ...(resources === undefined ? {} : { resources: matcher(resources) }),
      ...(prompts === undefined ? {} : { prompts: matcher(prompts) }),
    }
    policies.set(tool, policy)
  }
  return policy
}

export function matcher (patterns: readonly string[]): NameMatcher {
  const exact = new Set(patterns.filter((p) => !p.includes('*')))
  const globs = patterns.filter((p) => p.includes('*')).map((glob) => ({ glob, test: globRegExp(glob) }))
  return {
    allows: (name) => exact.has(name) || globs.some((g) => g.test.test(name)),
    entry: (name) => exact.has(name) ? name : globs.find((g) => g.test.test(name))?.glob,
  }
}

function globRegExp (glob: string): RegExp {
  const body = glob.split('*').map((part) => part.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')).join('[^]*')
  return new RegExp(`^${body}$`)
}

/**
 * For each tool with `mcp:`, the entry of its `tools` list that allows an MCP tool name (undefined: none does): the
 * metrics label MCP tool calls by it, so the label takes only values the config wrote.
 */
export function mcpToolEntries (tools: Readonly<Record<string, ToolConfig>>): Map<string, NameMatcher['entry']> {
  const out = new Map<string, NameMatcher['entry']>()
  for (const [name, tool] of Object.entries(tools)) {
    const policy = mcpPolicyOf(tool)
    if (policy !== undefined) out.set(name, (mcpTool) => policy.tools.entry(mcpTool))
  }
  return out
}
