import {
  constants, createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { Config } from '../../config/schema.js'
import { SidekeyError } from '../../errors.js'
import { asSidekeyError, sendError } from '../respond.js'
import type { TunnelContext } from './tunnel.js'

/**
 * A request from an HTTP/2 stream, shaped like an HTTP/1.1 one for the shared pipeline (listener.ts →
 * handler.ts): the compatibility API's req/res, with pseudo-headers moved out of `rawHeaders`.
 */
export type TunnelRequestHandler = (req: IncomingMessage, res: ServerResponse, ctx: TunnelContext) => void

/** A CONNECT stream inside a tunnel (never served): `authority` is what it asked for. */
export type TunnelConnectHandler = (authority: string, res: ServerResponse, ctx: TunnelContext) => void

/** Pseudo-headers a request may carry (RFC 9113 §8.3.1); `:authority` becomes `host`. */
const PSEUDO = new Set([':method', ':scheme', ':authority', ':path'])

/**
 * HTTP/2 from agents inside intercepted TLS tunnels (ALPN h2). One node:http2 server that never listens is fed
 * the decrypted sockets; each stream runs through the same pipeline as an HTTP/1.1 request in a tunnel, so
 * `:authority` is held to the CONNECT target exactly as Host is (421), and matching, stripping, injection and
 * audit are shared. Limits (threat model: the agent, exhaustion, Envoy's edge values):
 * `http2.max_concurrent_streams` (100), `initial_stream_window` (64 KiB), `connection_window` (1 MiB), header list
 * size and count from `limits`, no push, no extended CONNECT; nghttp2 bounds CONTINUATION frames per header block
 * and Node ≥ 20.12 bounds rapid resets, and each session is also closed once `http2.max_premature_resets` streams
 * were reset by the agent before their answer and they are at least half of its streams (Envoy's premature-reset rule).
 */
export class AgentH2 {
  readonly #server: Http2Server
  readonly #sessions = new Map<ServerHttp2Session, TunnelContext>()
  readonly #onRequest: TunnelRequestHandler
  readonly #idleMs: number
  readonly #connectionWindow: number
  readonly #maxResets: number
  #accepting: { ctx: TunnelContext, socket: TLSSocket } | undefined

  constructor (config: Readonly<Config>, onRequest: TunnelRequestHandler, onConnect: TunnelConnectHandler) {
    const { limits, http2 } = config
    this.#onRequest = onRequest
    this.#idleMs = limits.idle_timeout
    this.#connectionWindow = http2.connection_window
    this.#maxResets = http2.max_premature_resets
    this.#server = createServer({
      settings: {
        maxConcurrentStreams: http2.max_concurrent_streams,
        initialWindowSize: http2.initial_stream_window,
        maxHeaderListSize: limits.max_header_bytes,
        enablePush: false,
        enableConnectProtocol: false,
      },
      // One more than the limit plus the pseudo-headers, so "too many" is answered 431 by listener.ts.
      maxHeaderListPairs: limits.max_headers + 1 + PSEUDO.size,
      maxSessionMemory: 10,
    })
    this.#server.on('session', (session: ServerHttp2Session) => this.#onSession(session))
    this.#server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#onStream(req, res))
    // Without a listener node:http2 answers CONNECT 405 itself, unaudited.
    this.#server.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      const ctx = this.#sessions.get(req.stream.session as ServerHttp2Session)
      if (ctx === undefined) { req.stream.close(constants.NGHTTP2_REFUSED_STREAM); return }
      onConnect(req.authority, res as unknown as ServerResponse, ctx)
    })
    // A broken session is destroyed by Node; the agent sees GOAWAY or a closed tunnel. Nothing to answer here.
    this.#server.on('sessionError', () => {})
  }

  /** Serves a TLS tunnel socket whose ALPN chose h2. */
  accept (socket: TLSSocket, ctx: TunnelContext): void {
    // The session's own idle timer replaces the socket's: http2 reads the socket natively, bypassing its timer.
    socket.setTimeout(0)
    // What tls.Server does before 'secureConnection': a TLSSocket built by hand keeps this flag, and node:http2
    // would wait for a 'secureConnect' that a server socket never emits.
    ;(socket as TLSSocket & { secureConnecting: boolean }).secureConnecting = false
    this.#accepting = { ctx, socket }
    try {
      this.#server.emit('connection', socket)
    } finally {
      this.#accepting = undefined
    }
  }

  /** Sends GOAWAY to every session: streams in flight finish, no new ones start. */
  close (): void {
    for (const session of this.#sessions.keys()) session.close()
  }

  #onSession (session: ServerHttp2Session): void {
    if (this.#accepting === undefined) { session.destroy(); return }
    const { ctx, socket } = this.#accepting
    this.#sessions.set(session, ctx)
    session.once('close', () => this.#sessions.delete(session))
    // The tunnel socket is half-open (the agent's CONNECT socket allows it) and node:http2 does not close a session
    // whose peer ended: an agent that ends TLS without GOAWAY (curl at exit) would pin its connection slot until
    // the idle timeout. Nothing more can arrive, so the session ends once the streams in flight have answered.
    socket.once('end', () => session.close())
    session.setTimeout(this.#idleMs, () => session.close())
    try { session.setLocalWindowSize(this.#connectionWindow) } catch { /* session already gone */ }
    let streams = 0
    let premature = 0
    session.on('stream', (stream: ServerHttp2Stream) => {
      streams++
      stream.once('aborted', () => {
        premature++
        if (premature >= this.#maxResets && premature * 2 >= streams && !session.destroyed) {
          const why = new SidekeyError('SIDEKEY_OVERLOADED', 'too many premature stream resets')
          session.destroy(why, constants.NGHTTP2_ENHANCE_YOUR_CALM)
        }
      })
    })
  }

  #onStream (req: Http2ServerRequest, res: Http2ServerResponse): void {
    const ctx = this.#sessions.get(req.stream.session as ServerHttp2Session)
    if (ctx === undefined) { req.stream.close(constants.NGHTTP2_REFUSED_STREAM); return }
    // handler.ts asks `res.destroyed` to skip upstream work for a stream the agent already reset.
    Object.defineProperty(res, 'destroyed', { get: () => res.stream.destroyed || res.stream.aborted })
    const http1Res = res as unknown as ServerResponse
    try {
      this.#onRequest(asHttp1Request(req), http1Res, ctx)
    } catch (err) {
      sendError(http1Res, asSidekeyError(err), '-')
    }
  }
}

/**
 * Presents an h2 request the way the HTTP/1.1 pipeline reads one: `rawHeaders` without pseudo-headers, `host`
 * from `:authority` (both present and different is malformed, RFC 9113 §8.3.1), cookie fields joined (§8.2.3),
 * and a body without Content-Length marked as chunked so handler.ts streams it (h2 frames the body itself).
 */
export function asHttp1Request (req: Http2ServerRequest): IncomingMessage {
  const authority = req.headers[':authority']
  const scheme = req.headers[':scheme']
  if (scheme !== 'https') {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'h2 requests in a TLS tunnel use the https scheme')
  }
  const raw: string[] = []
  const cookies: string[] = []
  let host: string | undefined
  const src = req.rawHeaders
  for (let i = 0; i < src.length; i += 2) {
    const name = src[i]!
    const value = src[i + 1]!
    if (name.startsWith(':')) {
      if (!PSEUDO.has(name)) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'unknown pseudo-header')
      continue
    }
    if (name === 'cookie') { cookies.push(value); continue }
    if (name === 'host') host = value
    raw.push(name, value)
  }
  if (authority !== undefined && host !== undefined && authority !== host) {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', ':authority and Host differ')
  }
  if (host === undefined && authority !== undefined) raw.unshift('host', authority)
  if (cookies.length > 0) raw.push('cookie', cookies.join('; '))
  const headers = req.headers as IncomingMessage['headers']
  if (headers.host === undefined && authority !== undefined) headers.host = authority
  if (headers['content-length'] === undefined && !req.stream.endAfterHeaders) headers['transfer-encoding'] = 'chunked'
  Object.defineProperty(req, 'rawHeaders', { value: raw })
  return req as unknown as IncomingMessage
}
