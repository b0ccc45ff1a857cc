import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { getHeapStatistics } from 'node:v8'
import type { LimitsConfig } from '../../config/schema.js'
import { egressDenied, NO_TOOL, SELF, SidekeyError } from '../../errors.js'
import { formatAuthority, parseAuthority } from '../../net/host.js'
import { targetsSelf } from '../../net/self.js'
import { RequestHandler } from '../pipeline/handler.js'
import type { RequestTarget } from './target.js'
import { pathWithoutQuery } from '../../util/path.js'
import { asSidekeyError, sendError, sendRawError } from '../respond.js'
import { connectPortAllowed, type Runtime } from '../runtime.js'
import { blindTunnel, intercept, MAX_REQUESTED, type TunnelContext } from './tunnel.js'
import { upgradeResponse } from './upgrade.js'
import { CA_CONSTRAINT_DETAIL } from '../../tls/leaf-cache.js'
import { AgentH2 } from './h2.js'
import { USUAL_METHODS } from '../methods.js'
import { listen } from '../../util/listen.js'
import { ingressEvent } from '../pipeline/context.js'
import { absoluteTarget, hostMismatch } from './absolute-target.js'
import { makeServer, tooManyHeaders } from './http-server.js'

export interface ListenerOptions {
  /** Used heap over the heap limit, 0..1; past OVERLOAD_HEAP_RATIO new requests are refused (tests inject it). */
  readonly heapUsedRatio?: () => number
}

/** Stop taking requests at 90 % of the heap limit (threat model: the agent, exhaustion; Envoy stops at 98 %). */
export const OVERLOAD_HEAP_RATIO = 0.9

let heapReadAt = -Infinity
let heapRatio = 0

/** Read at most once a millisecond: the reading costs more than the rest of a request's admission. */
function heapUsedRatio (): number {
  const now = performance.now()
  if (now - heapReadAt >= 1) {
    const h = getHeapStatistics()
    heapRatio = h.used_heap_size / h.heap_size_limit
    heapReadAt = now
  }
  return heapRatio
}

/**
 * The proxy listener: absolute-form HTTP requests and CONNECT on one port, with the limits that keep an exhausting
 * agent out (docs/threat-model.md). Requests inside intercepted tunnels are served by a second http.Server that
 * never listens.
 */
export class ProxyListener {
  readonly #runtime: () => Runtime
  readonly #outer: Server
  readonly #inner: Server
  readonly #handler: RequestHandler
  readonly #h2: AgentH2
  readonly #contexts = new WeakMap<object, TunnelContext>()
  readonly #tunnels = new Set<Socket>()
  readonly #idPrefix = randomBytes(4).toString('hex')
  /** When each client connection (or intercepted TLS session) began, for `max_connection_lifetime`. */
  readonly #born = new WeakMap<object, number>()
  readonly #heapUsedRatio: () => number
  #nextId = 0
  #draining = false

  constructor (runtime: () => Runtime, opts: ListenerOptions = {}) {
    this.#runtime = runtime
    this.#heapUsedRatio = opts.heapUsedRatio ?? heapUsedRatio
    const limits = runtime().config.limits
    this.#handler = new RequestHandler(runtime, () => this.nextRequestId())
    this.#outer = makeServer(limits, (req, res) => {
      this.#onRequest(req, res).catch((err) => this.#crashed(res, err))
    })
    this.#outer.maxConnections = limits.max_connections
    this.#outer.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      void this.#onConnect(req, socket, head)
    })
    this.#inner = makeServer(limits, (req, res) => {
      this.#onTunnelRequest(req, res).catch((err) => this.#crashed(res, err))
    })
    // Node starts tracking connections (headers/request timeouts, closeIdleConnections) on 'listening'; the inner
    // server never listens, so without this a slowloris inside an intercepted tunnel would only meet the idle timeout.
    this.#inner.emit('listening')
    const born = (socket: Socket): void => { if (!this.#born.has(socket)) this.#born.set(socket, Date.now()) }
    this.#outer.on('connection', born)
    this.#inner.on('connection', born)
    // Upgrades (WebSocket) take the same path as any request, answered on the raw socket (upgrade.ts).
    type OnRequest = (req: IncomingMessage, res: ServerResponse) => Promise<void>
    const upgrade = (onRequest: OnRequest) => (req: IncomingMessage, socket: Socket, head: Buffer): void => {
      this.#tunnels.add(socket)
      socket.once('close', () => this.#tunnels.delete(socket))
      const res = upgradeResponse(req, socket, head, this.#runtime().config.limits.idle_timeout)
      if (res !== undefined) onRequest(req, res).catch((err) => this.#crashed(res, err))
    }
    this.#outer.on('upgrade', upgrade((req, res) => this.#onRequest(req, res)))
    this.#inner.on('upgrade', upgrade((req, res) => this.#onTunnelRequest(req, res)))
    this.#h2 = new AgentH2(runtime().config,
      (req, res, ctx) => { this.#onTunnelRequest(req, res, ctx).catch((err) => this.#crashed(res, err)) },
      (authority, res, ctx) => this.#connectInTunnel(ctx, authority,
        (err, id, headers) => sendError(res, err, id, headers)))
    // A CONNECT inside an intercepted HTTP/1.1 tunnel (plain or TLS): answered and audited, not dropped.
    this.#inner.on('connect', (req: IncomingMessage, socket: Socket) => {
      const ctx = this.#contexts.get(socket)
      if (ctx === undefined) { socket.destroy(); return }
      this.#connectInTunnel(ctx, req.url ?? '', (err, id, headers) => sendRawError(socket, err, id, headers))
    })
  }

  listen (host: string, port: number): Promise<AddressInfo> {
    return listen(this.#outer, host, port)
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts what is left. While draining,
   * every response is a connection's last, and connections (intercepted tunnels included) are closed as soon as
   * they are idle.
   */
  async close (graceMs: number): Promise<void> {
    this.#draining = true
    const closed = new Promise<void>((resolve) => this.#outer.close(() => resolve()))
    this.#inner.close(() => {})
    this.#h2.close()
    const closeIdle = (): void => {
      this.#outer.closeIdleConnections()
      this.#inner.closeIdleConnections()
    }
    closeIdle()
    const sweep = setInterval(closeIdle, 100)
    const timer = setTimeout(() => {
      this.#outer.closeAllConnections()
      this.#inner.closeAllConnections()
      for (const s of this.#tunnels) s.destroy()
    }, graceMs)
    timer.unref()
    await closed
    clearInterval(sweep)
    clearTimeout(timer)
  }

  /** A request handler bug must cost one request, not the sidecar: answer 500 (no detail) and keep serving. */
  #crashed (res: ServerResponse, err: unknown): void {
    sendError(res, asSidekeyError(err), this.nextRequestId())
  }

  nextRequestId (): string {
    return `${this.#idPrefix}-${(++this.#nextId).toString(36)}`
  }

  /**
   * Before any request is looked at: refused when the heap is nearly full (503, connection closed), and marked
   * to close after its response once the connection has lived `max_connection_lifetime`, so rules and tokens
   * are re-evaluated on a fresh connection.
   */
  #admit (req: IncomingMessage, res: ServerResponse, limits: LimitsConfig): boolean {
    const h2 = req.httpVersionMajor === 2
    if (this.#heapUsedRatio() >= OVERLOAD_HEAP_RATIO) {
      sendError(res, overloaded(), this.nextRequestId(), h2 ? {} : { connection: 'close' })
      return false
    }
    const born = this.#born.get(req.socket)
    const tooOld = born !== undefined && Date.now() - born >= limits.max_connection_lifetime
    if (!h2 && (this.#draining || tooOld)) res.shouldKeepAlive = false
    return true
  }

  async #onRequest (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rt = this.#runtime()
    if (!this.#admit(req, res, rt.config.limits)) return
    const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    let target: RequestTarget
    try {
      tooManyHeaders(req, rt.config.limits)
      target = absoluteTarget(req.url ?? '')
    } catch (err) {
      const e = err as SidekeyError
      sendError(res, e, this.nextRequestId())
      const reason = e.code === 'SIDEKEY_HEADERS_TOO_LARGE' ? 'headers_too_large' : 'bad_request_target'
      ingressEvent(rt, { event: 'egress.denied', host: '', port: 0, reason, client, method: req.method ?? '' })
      return
    }
    const routed = hostMismatch(req.headers.host, target) ? { ...target, hostMismatch: true } : target
    await this.#handler.handle(req, res, routed, client)
  }

  async #onTunnelRequest (req: IncomingMessage, res: ServerResponse, context?: TunnelContext): Promise<void> {
    const rt = this.#runtime()
    const ctx = context ?? this.#contexts.get(req.socket)
    if (ctx === undefined) { res.destroy(); return }
    if (!this.#admit(req, res, rt.config.limits)) return
    const scheme = ctx.tls ? 'https' : 'http'
    let pathAndQuery = req.url ?? ''
    let asked = ''
    try {
      tooManyHeaders(req, rt.config.limits)
      if (!pathAndQuery.startsWith('/')) {
        // absolute-form inside a tunnel: its authority must be the tunnel's
        const t = absoluteTarget(pathAndQuery)
        asked = `${t.scheme}://${formatAuthority(t.host, t.port, t.scheme === 'https' ? 443 : 80)}`
        pathAndQuery = t.pathAndQuery
        if (t.host !== ctx.host || t.port !== ctx.port || t.scheme !== scheme) throw misdirected()
      }
      const hostHeader = req.headers.host
      if (hostHeader === undefined) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'missing Host header')
      asked = hostHeader
      const a = parseAuthority(hostHeader, ctx.tls ? 443 : 80)
      if (a.host !== ctx.host || a.port !== ctx.port) throw misdirected()
    } catch (err) {
      const e = err as SidekeyError
      const requestId = this.nextRequestId()
      sendError(res, e, requestId)
      const misdirect = e.status === 421
      // One event for every transport (plain or TLS tunnel, HTTP/1.1 or h2, or a TLS server name in tunnel.ts).
      ingressEvent(rt, {
        event: 'egress.denied',
        host: ctx.host,
        port: ctx.port,
        reason: misdirect ? 'misdirected' : 'bad_request',
        client: ctx.client,
        method: req.method ?? '',
        request_id: requestId,
        path: pathWithoutQuery(pathAndQuery),
        ...(misdirect ? { requested: asked.slice(0, MAX_REQUESTED) } : {}),
      })
      return
    }
    const target: RequestTarget = { scheme, host: ctx.host, port: ctx.port, pathAndQuery, tunnel: true }
    await this.#handler.handle(req, res, target, ctx.client)
  }

  async #intercept (
    rt: Runtime, socket: Socket, head: Buffer, target: { host: string, port: number }, client: string
  ): Promise<void> {
    try {
      const h2 = rt.config.http2.enabled ? this.#h2 : undefined
      await intercept(rt, socket, head, target, client, this.#inner, this.#contexts, h2)
    } catch {
      socket.destroy()
    }
  }

  /**
   * A CONNECT sent inside an intercepted tunnel asks the tool's host for another tunnel, which carries no credential
   * and is never served. The request is well formed, so not 400: the tunnel's end plays the origin server, which
   * answers a method it does not allow with 405 and `Allow` (RFC 9110 §15.5.6). An HTTP/1.1 connection is closed
   * after it: a client may already be sending tunnel bytes that must not be read as requests.
   */
  #connectInTunnel (
    ctx: TunnelContext, requested: string,
    answer: (err: SidekeyError, requestId: string, headers: Record<string, string>) => void
  ): void {
    const requestId = this.nextRequestId()
    const refused = new SidekeyError('SIDEKEY_METHOD_NOT_ALLOWED', 'CONNECT inside a tunnel is refused')
    answer(refused, requestId, { allow: USUAL_METHODS })
    ingressEvent(this.#runtime(), {
      event: 'egress.denied',
      host: ctx.host,
      port: ctx.port,
      reason: 'connect_in_tunnel',
      client: ctx.client,
      method: 'CONNECT',
      request_id: requestId,
      requested: requested.slice(0, MAX_REQUESTED),
    })
  }

  async #onConnect (req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const rt = this.#runtime()
    const client = `${socket.remoteAddress}:${socket.remotePort}`
    const requestId = this.nextRequestId()
    socket.on('error', () => socket.destroy())
    if (this.#heapUsedRatio() >= OVERLOAD_HEAP_RATIO) {
      sendRawError(socket, overloaded(), requestId)
      return
    }
    let target: { host: string, port: number }
    try {
      target = parseAuthority(req.url ?? '', undefined)
    } catch (err) {
      sendRawError(socket, err as SidekeyError, requestId)
      ingressEvent(rt, {
        event: 'egress.denied',
        host: '',
        port: 0,
        reason: 'bad_connect_target',
        client,
        method: 'CONNECT',
        request_id: requestId,
      })
      return
    }
    const deny = (reason: string): void => {
      ingressEvent(rt, {
        event: 'egress.denied',
        host: target.host,
        port: target.port,
        reason,
        client,
        method: 'CONNECT',
        request_id: requestId,
      })
    }
    this.#tunnels.add(socket)
    socket.once('close', () => this.#tunnels.delete(socket))
    if (rt.router.ownsHost(target.host, target.port)) {
      // A leaf the CA may not sign would end in a bare TLS abort: refuse the CONNECT with a reason instead, unless a
      // plaintext tool owns the host (plain HTTP in the tunnel needs no leaf).
      if (!rt.leaves.permits(target.host) && !rt.router.candidates(target.host).some((t) => t.config.plaintext)) {
        deny('ca_constraint')
        sendRawError(socket, egressDenied(CA_CONSTRAINT_DETAIL, 'ca_constraint'), requestId)
        return
      }
      await this.#intercept(rt, socket, head, target, client)
      return
    }
    const portAllowed = connectPortAllowed(rt, target.port)
    const unmatched = rt.config.egress.unmatched
    if (unmatched !== 'deny' && portAllowed && targetsSelf(target.host, target.port, rt.ownPorts, rt.resolver.pins)) {
      deny('self')
      sendRawError(socket, egressDenied(SELF, 'self'), requestId)
      return
    }
    if (unmatched === 'inventory' && portAllowed) {
      // Intercepted like a tool host, so each request inside is seen (and passed through, handler.ts).
      await this.#intercept(rt, socket, head, target, client)
      return
    }
    if (unmatched === 'tunnel' && portAllowed) {
      blindTunnel(rt, socket, head, target, requestId, {
        denied: deny,
        passed: (status, error) => ingressEvent(rt, {
          event: 'egress.passed',
          host: target.host,
          port: target.port,
          method: 'CONNECT',
          status,
          client,
          request_id: requestId,
          ...(error === undefined ? {} : { error }),
        }),
      })
      // A blind tunnel carries no requests to mark: it is cut when the connection's lifetime is up.
      const age = Date.now() - (this.#born.get(socket) ?? Date.now())
      const cut = setTimeout(() => socket.destroy(), Math.max(0, rt.config.limits.max_connection_lifetime - age))
      cut.unref()
      socket.once('close', () => clearTimeout(cut))
      return
    }
    deny(portAllowed ? 'no_tool' : 'port')
    const refusal = portAllowed
      ? egressDenied(NO_TOOL, 'no_tool')
      : egressDenied(`CONNECT to port ${target.port} is not allowed (egress.connect_ports)`, 'port')
    sendRawError(socket, refusal, requestId)
  }
}

function overloaded (): SidekeyError {
  return new SidekeyError('SIDEKEY_OVERLOADED', 'sidekey is short of memory')
}

function misdirected (): SidekeyError {
  return new SidekeyError('SIDEKEY_MISDIRECTED', 'request authority does not match the CONNECT target')
}
