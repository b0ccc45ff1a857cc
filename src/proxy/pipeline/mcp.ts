import { SidekeyError } from '../../errors.js'
import { checkMcpRequest, mcpBodyTooLarge, mcpPolicyOf, mcpResponseFilter, sendMcpRefusal } from '../../mcp/index.js'
import { readWholeBody } from '../../util/whole-body.js'
import type { McpPolicy } from '../../mcp/index.js'
import type { Refusal, RoutedContext } from './context.js'
import type { PolicyStep } from './policy.js'

/**
 * An MCP tool (`mcp:`, src/mcp/): each POSTed JSON-RPC body is read whole and judged before a credential goes on
 * it. The body read is kept for the exchange; a refusal is answered in JSON-RPC and never reaches the server.
 */
export const mcpAllowed: PolicyStep = (ctx) => {
  const policy = mcpPolicyOf(ctx.tool.config)
  // Answered at once for every tool that is not an MCP server: no promise, no turn of the event loop.
  return policy === undefined || ctx.method !== 'POST' ? undefined : judged(ctx, policy)
}

async function judged (ctx: RoutedContext, policy: McpPolicy): Promise<Refusal | undefined> {
  const body = await readWholeBody(ctx.req, ctx.rt.config.limits.replay_body_bytes)
  const check = body === undefined
    ? { refusal: mcpBodyTooLarge(), lists: [] }
    : checkMcpRequest(policy, ctx.req.headers, body)
  ctx.mcp = { call: check.call, body, filter: (type) => mcpResponseFilter(policy, check, type) }
  const refusal = check.refusal
  if (refusal === undefined) return undefined
  return {
    error: new SidekeyError(refusal.code, refusal.reason),
    outcome: refusal.outcome,
    answer: (res, requestId) => sendMcpRefusal(res, refusal, requestId),
  }
}
