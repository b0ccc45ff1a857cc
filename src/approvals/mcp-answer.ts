import { INVALID_REQUEST } from '../mcp/refusal.js'

/**
 * The JSON-RPC answer to a held MCP body that was denied or timed out, one per request in it (a batch is held and
 * answered whole): a `tools/call` gets an `isError` result the model reads as the tool's answer, other methods a
 * JSON-RPC error. The body was already judged strict JSON by the MCP step.
 */
export function approvalAnswer (body: Buffer, text: string): string {
  const parsed = JSON.parse(body.toString('utf8')) as unknown
  const messages = (Array.isArray(parsed) ? parsed : [parsed]) as Array<{ id?: unknown, method?: unknown }>
  const answers = messages.filter((m) => typeof m.method === 'string' && m.id !== undefined).map((m) =>
    m.method === 'tools/call'
      ? { jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text }], isError: true } }
      : { jsonrpc: '2.0', id: m.id, error: { code: INVALID_REQUEST, message: text } })
  return JSON.stringify(Array.isArray(parsed) ? answers : answers[0] ?? null)
}
