import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { STATUS_CODES } from 'node:http'
import { SidekeyError } from '../errors.js'

/**
 * The one place errors become answers to the agent. Bodies carry a stable error name, the details SPEC names
 * (`{"error":"credential_unavailable","tool":"NAME"}`) and the request id that ties the answer to its audit line
 * (RELIABILITY D2: "generic body with a request id"; also in `x-sidekey-request-id`), never an internal message,
 * upstream detail or secret.
 */
const ERROR_NAMES: Record<string, string> = {
  SIDEKEY_BAD_REQUEST: 'bad_request',
  SIDEKEY_MISDIRECTED: 'misdirected_request',
  SIDEKEY_EGRESS_DENIED: 'egress_denied',
  SIDEKEY_METHOD_DENIED: 'method_denied',
  SIDEKEY_PLACEHOLDER_REQUIRED: 'placeholder_required',
  SIDEKEY_TOOL_LOCKED: 'tool_locked',
  SIDEKEY_CREDENTIAL_UNAVAILABLE: 'credential_unavailable',
  SIDEKEY_UPSTREAM_FAILED: 'upstream_failed',
  SIDEKEY_UPSTREAM_TIMEOUT: 'upstream_timeout',
  SIDEKEY_UPSTREAM_TLS: 'upstream_tls_failed',
  SIDEKEY_OVERLOADED: 'overloaded',
}

/**
 * Set on a client socket by the server's `clientError` handler: what the agent was answered there (400/431 for a
 * parse error such as `HPE_INVALID_CHUNK_SIZE`, 408 for a request timeout). A request whose body fails that way
 * mid-stream is audited with this answer, not with the upstream failure its cancellation causes.
 */
export const CLIENT_ERROR: unique symbol = Symbol('sidekey.clientError')

export type MarkedSocket = Socket & { [CLIENT_ERROR]?: { readonly status: number, readonly code: string } }

export function asSidekeyError (err: unknown): SidekeyError {
  return err instanceof SidekeyError ? err : new SidekeyError('SIDEKEY_INTERNAL', 'internal error', { status: 500, cause: err })
}

export function errorBody (err: SidekeyError, requestId: string): string {
  const body: Record<string, string | number> = { error: ERROR_NAMES[err.code] ?? 'internal_error', ...err.details, request_id: requestId }
  if (err.expose) body.message = err.message
  return JSON.stringify(body)
}

/** Answers a request with the error; closes the connection for 400s (the stream may be out of sync). */
export function sendError (res: ServerResponse, err: SidekeyError, requestId: string, extraHeaders: Record<string, string> = {}): void {
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
    ...(close ? { connection: 'close' } : {}),
    ...extraHeaders,
  })
  res.end(body)
  if (close) res.once('finish', () => res.socket?.destroySoon())
}

/** Answers on a raw socket (CONNECT refusals, parse errors) and closes it without reading what follows (B2). */
export function sendRawError (socket: Socket, err: SidekeyError, requestId: string, extraHeaders: Record<string, string> = {}): void {
  const body = errorBody(err, requestId)
  if (socket.writable) {
    let extra = ''
    for (const [name, value] of Object.entries(extraHeaders)) extra += `${name}: ${value}\r\n`
    socket.end(`HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-sidekey-request-id: ${requestId}\r\nconnection: close\r\n${extra}\r\n${body}`)
  }
  socket.destroySoon()
}
