import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { STATUS_CODES } from 'node:http'
import { ERRORS, SidekeyError } from '../errors.js'

/**
 * The one place errors become answers to the agent. Bodies carry a stable error name, the documented fields
 * (`{"error":"credential_unavailable","tool":"NAME"}`; `reason` and `detail` for refusals and upstream failures)
 * and the request id that ties the answer to its audit line (also in `x-sidekey-request-id`), never an internal
 * message, raw upstream error or secret. Every error also carries an RFC 9209 `Proxy-Status` header, which proxy
 * aware clients show even when they hide the body (a refused CONNECT).
 */

/**
 * Set on a client socket by the server's `clientError` handler: what the agent was answered there (400/431 for a
 * parse error such as `HPE_INVALID_CHUNK_SIZE`, 408 for a request timeout). A request whose body fails that way
 * mid-stream is audited with this answer, not with the upstream failure its cancellation causes.
 */
export const CLIENT_ERROR: unique symbol = Symbol('sidekey.clientError')

export type MarkedSocket = Socket & { [CLIENT_ERROR]?: { readonly status: number, readonly code: string } }

/** RFC 9209 §2.3 error types where a refusal's reason says more than its code (errors.ts has the code's). */
const REASON_TYPES: Record<string, string> = {
  private_address: 'destination_ip_prohibited',
  self: 'proxy_loop_detected',
  ca_constraint: 'proxy_configuration_error',
}

/**
 * `sidekey; error=destination_ip_prohibited; details="…"` (RFC 9209): the type, and the body's words if safe to show.
 */
export function proxyStatus (err: SidekeyError): string {
  const reason = err.details.reason
  const type = err.proxyStatus ?? (typeof reason === 'string' ? REASON_TYPES[reason] : undefined) ??
    ERRORS[err.code].proxyStatus
  const detail = err.details.detail ?? (err.expose ? err.message : undefined)
  return detail === undefined ? `sidekey; error=${type}` : `sidekey; error=${type}; details=${sfString(String(detail))}`
}

/** An RFC 8941 sf-string: printable ASCII only, `"` and `\` escaped. */
function sfString (text: string): string {
  return `"${text.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, '\\$&')}"`
}

export function asSidekeyError (err: unknown): SidekeyError {
  return err instanceof SidekeyError ? err : new SidekeyError('SIDEKEY_INTERNAL', 'internal error', { cause: err })
}

export function errorBody (err: SidekeyError, requestId: string): string {
  const body: Record<string, string | number> = { error: ERRORS[err.code].name, ...err.details, request_id: requestId }
  if (err.expose) body.message = err.message
  return JSON.stringify(body)
}

/** Answers a request with the error; closes the connection for 400s (the stream may be out of sync). */
export function sendError (
  res: ServerResponse, err: SidekeyError, requestId: string, extraHeaders: Record<string, string> = {}
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = errorBody(err, requestId)
  // HTTP/2 (h2.ts) refuses a stream, never the connection, and has no Connection header.
  const close = (err.status === 400 || err.status === 431) && res.req?.httpVersionMajor !== 2
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-sidekey-request-id': requestId,
    'proxy-status': proxyStatus(err),
    ...(close ? { connection: 'close' } : {}),
    ...extraHeaders,
  })
  res.end(body)
  if (close) res.once('finish', () => res.socket?.destroySoon())
}

/** Answers on a raw socket (CONNECT refusals, parse errors) and closes it without reading what follows. */
export function sendRawError (
  socket: Socket, err: SidekeyError, requestId: string, extraHeaders: Record<string, string> = {}
): void {
  const body = errorBody(err, requestId)
  if (socket.writable) {
    let extra = ''
    for (const [name, value] of Object.entries(extraHeaders)) extra += `${name}: ${value}\r\n`
    socket.end(`HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-sidekey-request-id: ${requestId}\r\n` +
      `proxy-status: ${proxyStatus(err)}\r\n` +
      `connection: close\r\n${extra}\r\n${body}`)
  }
  socket.destroySoon()
}
