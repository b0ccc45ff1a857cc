import type { ServerResponse } from 'node:http'
import type { McpRefusal } from './refusal.js'

/**
 * Answers an MCP request sidekey refused, in JSON-RPC so the agent's MCP client reads it, with the request id that
 * ties it to its audit line and an RFC 9209 Proxy-Status naming the refusal. A 400 or 413 closes an HTTP/1.1
 * connection, as respond.ts does: an unread body may follow.
 */
export function sendMcpRefusal (res: ServerResponse, refusal: McpRefusal, requestId: string): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const type = refusal.status === 200 ? 'http_request_denied' : 'http_request_error'
  const close = refusal.status !== 200 && res.req?.httpVersionMajor !== 2
  res.writeHead(refusal.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(refusal.body),
    'x-sidekey-request-id': requestId,
    'proxy-status': `sidekey; error=${type}; details="${refusal.reason}"`,
    ...(close ? { connection: 'close' } : {}),
  })
  res.end(refusal.body)
  if (close) res.once('finish', () => res.socket?.destroySoon())
}
