import { SidekeyError } from '../../errors.js'
import { checkMcpRequest, mcpBodyTooLarge, mcpPolicyOf, mcpResponseFilter, readWholeBody, sendMcpRefusal } from '../../mcp/index.js'
import type { PolicyStep } from './policy.js'

/**
 * An MCP tool (`mcp:`, src/mcp/): each POSTed JSON-RPC body is read whole and judged before a credential goes on
 * it. The body read is kept for the exchange; a refusal is answered in JSON-RPC and never reaches the server.
 */
export const mcpAllowed: PolicyStep = async (ctx) => {
  const policy = mcpPolicyOf(ctx.tool.config)
  if (policy === undefined || ctx.method !== 'POST') return undefined
  const body = await readWholeBody(ctx.req, ctx.rt.config.limits.replay_body_bytes)
  const check = body === undefined ? { refusal: mcpBodyTooLarge(), lists: [] } : checkMcpRequest(policy, ctx.req.headers, body)
  ctx.mcp = { call: check.call, body, filter: (type) => mcpResponseFilter(policy, check, type) }
  const refusal = check.refusal
  if (refusal === undefined) return undefined
  return {
    error: new SidekeyError(refusal.code, refusal.reason),
    outcome: refusal.outcome,
    answer: (res, requestId) => sendMcpRefusal(res, refusal, requestId),
  }
}
