/**
 * MCP awareness (Streamable HTTP): which MCP tools, resources and prompts a tool's credential may reach. The request
 * path calls `checkMcpRequest` on a POST body before the credential is attached, answers a refusal with
 * `sendMcpRefusal`, and relays the answer through `mcpResponseFilter`; everything else passes as for any tool.
 */
export { checkMcpRequest, type McpCall, type McpCheck } from './check.js'
export { mcpPolicyOf, mcpToolEntries, type McpPolicy } from './policy.js'
export { mcpResponseFilter, type ByteFilter } from './response.js'
export { sendMcpRefusal } from './send.js'
export { badRequest, mcpBodyTooLarge, type McpRefusal } from './refusal.js'
