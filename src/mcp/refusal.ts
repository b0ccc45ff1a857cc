import type { McpCall } from './check.js'

/** JSON-RPC error codes sidekey answers with: the spec's, and SEP-2243's HeaderMismatch. */
export const PARSE_ERROR = -32700
export const INVALID_REQUEST = -32600
export const INVALID_PARAMS = -32602
export const HEADER_MISMATCH = -32020

/**
 * A JSON-RPC request sidekey answers itself, never forwarding it: `status` and `body` are the answer, `outcome`
 * and `code` go to the audit line and the Proxy-Status header.
 */
export interface McpRefusal {
  readonly status: 200 | 400 | 413
  readonly body: string
  readonly outcome: 'mcp_denied' | 'bad_request'
  readonly code: 'SIDEKEY_MCP_DENIED' | 'SIDEKEY_MCP_BAD_REQUEST' | 'SIDEKEY_MCP_BODY_TOO_LARGE'
  /** Fixed words for Proxy-Status: never a name the agent sent. */
  readonly reason: string
}

type Id = string | number | null

/** A body sidekey cannot judge (malformed, too large) or whose SEP-2243 headers disagree with it: HTTP 400. */
export function badRequest (code: number, message: string, reason: string, tooLarge = false): McpRefusal {
  const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message: `sidekey: ${message}` } })
  if (tooLarge) return { status: 413, body, outcome: 'bad_request', code: 'SIDEKEY_MCP_BODY_TOO_LARGE', reason }
  return { status: 400, body, outcome: 'bad_request', code: 'SIDEKEY_MCP_BAD_REQUEST', reason }
}

/**
 * The answer to one call the policy refuses. A refused `tools/call` is answered as the MCP SDKs' own servers answer
 * an unknown or disabled tool: a CallToolResult with `isError: true`, which every client hands to the model as the
 * tool's result, so the model reads which tool was refused and why. The other methods have no such result and get
 * a JSON-RPC error (-32602, invalid params), which the SDK clients raise with its message.
 */
export function deniedAnswer (id: Id, call: McpCall): object {
  const what = call.method === 'tools/call'
    ? 'MCP tool'
    : call.method.startsWith('prompts/') ? 'MCP prompt' : 'MCP resource'
  const text = `sidekey refused the ${what} ${JSON.stringify(call.name)}: it is not in the list this agent's ` +
    'credential allows (mcp: in the sidekey config); do not retry it'
  if (call.method === 'tools/call') {
    return { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }], isError: true } }
  }
  return { jsonrpc: '2.0', id, error: { code: INVALID_PARAMS, message: text } }
}

/** A batch member sidekey did not send because another member was refused. */
export function notSentAnswer (id: Id): object {
  const message = 'sidekey: not sent, another request in this batch was refused'
  return { jsonrpc: '2.0', id, error: { code: INVALID_REQUEST, message } }
}

export function denied (answers: object | object[]): McpRefusal {
  return {
    status: 200, body: JSON.stringify(answers), outcome: 'mcp_denied', code: 'SIDEKEY_MCP_DENIED', reason: 'mcp_denied',
  }
}

/** A POSTed body over `limits.replay_body_bytes`: sidekey cannot judge it, so it is not sent. */
export function mcpBodyTooLarge (): McpRefusal {
  return badRequest(INVALID_REQUEST, 'the MCP request body is larger than limits.replay_body_bytes',
    'mcp_body_too_large', true)
}
