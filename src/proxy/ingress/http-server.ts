import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { LimitsConfig } from '../../config/schema.js'
import { SidekeyError } from '../../errors.js'
import { CLIENT_ERROR, sendRawError, type MarkedSocket } from '../respond.js'

/** An ingress http.Server (the listening one, or the one serving inside tunnels) under the configured limits. */
export function makeServer (
  limits: LimitsConfig, onRequest: (req: IncomingMessage, res: ServerResponse) => void
): Server {
  const server = createServer({
    maxHeaderSize: limits.max_header_bytes,
    // Node refuses a headers timeout longer than the request timeout; the shorter one is what applies anyway.
    headersTimeout: limits.request_timeout > 0
      ? Math.min(limits.headers_timeout, limits.request_timeout)
      : limits.headers_timeout,
    requestTimeout: limits.request_timeout,
    // Twice a second, so a stalled header or body is cut within its timeout + 1 s (threat model: the agent,
    // exhaustion), not + 2 s.
    connectionsCheckingInterval: 500,
    keepAliveTimeout: limits.keep_alive_timeout,
    requireHostHeader: true,
    joinDuplicateHeaders: false,
    insecureHTTPParser: false,
  }, onRequest)
  // One more than the limit, so that "too many" is seen and answered with 431 instead of silently truncated.
  server.maxHeadersCount = limits.max_headers + 1
  server.maxRequestsPerSocket = limits.max_requests_per_socket
  // Stream idle: a connection on which nothing moves either way (a client that stopped reading its response, an
  // upstream that stopped sending) is closed, and the exchange behind it is cancelled (threat model: the agent,
  // exhaustion).
  server.timeout = limits.idle_timeout
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    const code = err.code === 'HPE_HEADER_OVERFLOW'
      ? 'SIDEKEY_HEADERS_TOO_LARGE'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'SIDEKEY_REQUEST_TIMEOUT' : 'SIDEKEY_BAD_REQUEST'
    const refusal = new SidekeyError(code, 'malformed request')
    ;(socket as MarkedSocket)[CLIENT_ERROR] = { status: refusal.status, code: err.code ?? 'unknown' }
    sendRawError(socket, refusal, '-')
  })
  return server
}

export function tooManyHeaders (req: IncomingMessage, limits: LimitsConfig): void {
  if (req.rawHeaders.length / 2 > limits.max_headers) {
    throw new SidekeyError('SIDEKEY_HEADERS_TOO_LARGE', 'too many header fields')
  }
}
