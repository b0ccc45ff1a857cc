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
  const globs = patterns.filter((p) => p.includes('*')).map(globRegExp)
  return { allows: (name) => exact.has(name) || globs.some((g) => g.test(name)) }
}

function globRegExp (glob: string): RegExp {
  const body = glob.split('*').map((part) => part.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')).join('[^]*')
  return new RegExp(`^${body}$`)
}
