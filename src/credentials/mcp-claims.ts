/**
 * The claims a per-call token carries for an MCP call, so the MCP server can check that the token it got was signed
 * for the call it came with: `mcp_method` always, and the name the call acts on under a claim saying what it is.
 * A batch is `mcp_method: "batch"` alone: one token cannot name several calls.
 */
const NAME_CLAIMS: Readonly<Record<string, string>> = {
  'tools/call': 'mcp_tool',
  'prompts/get': 'mcp_prompt',
  'resources/read': 'mcp_resource',
  'resources/subscribe': 'mcp_resource',
  'resources/unsubscribe': 'mcp_resource',
}

export function mcpClaims (call: { readonly method: string, readonly name?: string }): Record<string, string> {
  const claim = NAME_CLAIMS[call.method]
  return claim === undefined || call.name === undefined
    ? { mcp_method: call.method }
    : { mcp_method: call.method, [claim]: call.name }
}
