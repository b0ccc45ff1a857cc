import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { LimitsConfig } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import { parseAuthority, normalizeHost } from '../net/host.js'
import { targetsSelf } from '../net/self.js'
import { RequestHandler, type RequestTarget } from './handler.js'
import { asSidekeyError, sendError, sendRawError } from './respond.js'
import type { Runtime } from './runtime.js'
import { blindTunnel, intercept, type TunnelContext } from './tunnel.js'
import { upgradeResponse } from './upgrade.js'
import { AgentH2 } from './h2.js'

/**
 * The proxy listener: absolute-form HTTP requests and CONNECT on one port, with RELIABILITY.md's limits.
 * Requests inside intercepted tunnels are served by a second http.Server that never listens.
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
  #nextId = 0

  constructor (runtime: () => Runtime) {
    this.#runtime = runtime
    const limits = runtime().config.limits
    this.#handler = new RequestHandler(runtime, () => `${this.#idPrefix}-${(++this.#nextId).toString(36)}`)
    this.#outer = makeServer(limits, (req, res) => { this.#onRequest(req, res).catch((err) => this.#crashed(res, err)) })
    this.#outer.maxConnections = limits.max_connections
    this.#outer.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => { void this.#onConnect(req, socket, head) })
    this.#inner = makeServer(limits, (req, res) => { this.#onTunnelRequest(req, res).catch((err) => this.#crashed(res, err)) })
    // Upgrades (WebSocket) take the same path as any request, answered on the raw socket (upgrade.ts).
    const upgrade = (onRequest: (req: IncomingMessage, res: ServerResponse) => Promise<void>) => (req: IncomingMessage, socket: Socket, head: Buffer): void => {
      this.#tunnels.add(socket)
      socket.once('close', () => this.#tunnels.delete(socket))
      const res = upgradeResponse(req, socket, head, this.#runtime().config.limits.idle_timeout)
      if (res !== undefined) onRequest(req, res).catch((err) => this.#crashed(res, err))
    }
    this.#outer.on('upgrade', upgrade((req, res) => this.#onRequest(req, res)))
    this.#inner.on('upgrade', upgrade((req, res) => this.#onTunnelRequest(req, res)))
    this.#h2 = new AgentH2(runtime().config, (req, res, ctx) => { this.#onTunnelRequest(req, res, ctx).catch((err) => this.#crashed(res, err)) })
  }

  listen (host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#outer.once('error', reject)
      this.#outer.listen({ host, port, exclusive: true }, () => {
        this.#outer.off('error', reject)
        resolve(this.#outer.address() as AddressInfo)
      })
    })
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts what is left. */
  async close (graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#outer.close(() => resolve()))
    this.#outer.closeIdleConnections()
    this.#inner.closeIdleConnections()
    this.#h2.close()
    const timer = setTimeout(() => {
      this.#outer.closeAllConnections()
      this.#inner.closeAllConnections()
      for (const s of this.#tunnels) s.destroy()
    }, graceMs)
    timer.unref()
    // Idle tunnels hold no request: close them now; busy ones end when their last response does.
    for (const s of this.#tunnels) if (!s.readableFlowing) s.destroy()
    await closed
    clearTimeout(timer)
  }

  /** A request handler bug must cost one request, not the sidecar: answer 500 (no detail) and keep serving. */
  #crashed (res: ServerResponse, err: unknown): void {
    sendError(res, asSidekeyError(err), this.nextRequestId())
  }

  nextRequestId (): string {
    return `${this.#idPrefix}-${(++this.#nextId).toString(36)}`
  }

  async #onRequest (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rt = this.#runtime()
    const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    let target: RequestTarget
    try {
      tooManyHeaders(req, rt.config.limits)
      target = absoluteTarget(req.url ?? '')
    } catch (err) {
      const e = err as SidekeyError
      sendError(res, e, this.nextRequestId())
      rt.audit.emit({ event: 'egress.denied', host: '', port: 0, reason: e.status === 431 ? 'headers_too_large' : 'bad_request_target', client, method: req.method ?? '' })
      return
    }
    await this.#handler.handle(req, res, hostMismatch(req.headers.host, target) ? { ...target, hostMismatch: true } : target, client)
  }

  async #onTunnelRequest (req: IncomingMessage, res: ServerResponse, context?: TunnelContext): Promise<void> {
    const rt = this.#runtime()
    const ctx = context ?? this.#contexts.get(req.socket)
    if (ctx === undefined) { res.destroy(); return }
    const scheme = ctx.tls ? 'https' : 'http'
    let pathAndQuery = req.url ?? ''
    try {
      tooManyHeaders(req, rt.config.limits)
      if (!pathAndQuery.startsWith('/')) {
        // absolute-form inside a tunnel: its authority must be the tunnel's
        const t = absoluteTarget(pathAndQuery)
        if (t.host !== ctx.host || t.port !== ctx.port || t.scheme !== scheme) throw misdirected()
        pathAndQuery = t.pathAndQuery
      }
      const hostHeader = req.headers.host
      if (hostHeader === undefined) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'missing Host header', { status: 400 })
      const a = parseAuthority(hostHeader, ctx.tls ? 443 : 80)
      if (a.host !== ctx.host || a.port !== ctx.port) throw misdirected()
    } catch (err) {
      const e = err as SidekeyError
      sendError(res, e, this.nextRequestId())
      const route = rt.router.match(scheme, ctx.host, ctx.port, '/', req.method ?? 'GET')
      if (e.status === 421 && route.kind !== 'none') {
        rt.audit.emit({ event: 'credential.used', tool: route.tool.name, credential_id: null, method: req.method ?? '', host: ctx.host, path: '', status: 421,
          duration_ms: 0, client: ctx.client, placeholder: 'absent', request_id: '', outcome: 'misdirected' })
      } else {
        rt.audit.emit({ event: 'egress.denied', host: ctx.host, port: ctx.port, reason: e.status === 421 ? 'misdirected' : 'bad_request', client: ctx.client, method: req.method ?? '' })
      }
      return
    }
    await this.#handler.handle(req, res, { scheme, host: ctx.host, port: ctx.port, pathAndQuery, tunnel: true }, ctx.client)
  }

  async #onConnect (req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const rt = this.#runtime()
    const client = `${socket.remoteAddress}:${socket.remotePort}`
    const requestId = this.nextRequestId()
    socket.on('error', () => socket.destroy())
    let target: { host: string, port: number }
    try {
      target = parseAuthority(req.url ?? '', undefined)
    } catch (err) {
      sendRawError(socket, err as SidekeyError, requestId)
      rt.audit.emit({ event: 'egress.denied', host: '', port: 0, reason: 'bad_connect_target', client, method: 'CONNECT', request_id: requestId })
      return
    }
    const deny = (reason: string): void => {
      rt.audit.emit({ event: 'egress.denied', host: target.host, port: target.port, reason, client, method: 'CONNECT', request_id: requestId })
    }
    this.#tunnels.add(socket)
    socket.once('close', () => this.#tunnels.delete(socket))
    if (rt.router.ownsHost(target.host, target.port)) {
      try {
        await intercept(rt, socket, head, target, client, this.#inner, this.#contexts, rt.config.http2.enabled ? this.#h2 : undefined)
      } catch {
        socket.destroy()
      }
      return
    }
    const portAllowed = rt.config.egress.connect_ports.includes(target.port) || rt.router.ports.has(target.port)
    if (rt.config.egress.unmatched === 'tunnel' && portAllowed) {
      if (targetsSelf(target.host, target.port, rt.ownPorts, rt.resolver.pins)) {
        deny('self')
        sendRawError(socket, new SidekeyError('SIDEKEY_EGRESS_DENIED', 'destination is sidekey itself', { status: 403 }), requestId)
        return
      }
      blindTunnel(rt, socket, head, target, requestId, deny)
      return
    }
    deny(portAllowed ? 'no_tool' : 'port')
    sendRawError(socket, new SidekeyError('SIDEKEY_EGRESS_DENIED', 'no tool matches this destination', { status: 403 }), requestId)
  }
}

function makeServer (limits: LimitsConfig, onRequest: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server = createServer({
    maxHeaderSize: limits.max_header_bytes,
    headersTimeout: limits.headers_timeout,
    requestTimeout: limits.request_timeout,
    connectionsCheckingInterval: 1000,
    keepAliveTimeout: limits.keep_alive_timeout,
    requireHostHeader: true,
    joinDuplicateHeaders: false,
    insecureHTTPParser: false,
  }, onRequest)
  // One more than the limit, so that "too many" is seen and answered with 431 instead of silently truncated.
  server.maxHeadersCount = limits.max_headers + 1
  server.maxRequestsPerSocket = limits.max_requests_per_socket
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    sendRawError(socket, new SidekeyError('SIDEKEY_BAD_REQUEST', 'malformed request', { status }), '-')
  })
  return server
}

function tooManyHeaders (req: IncomingMessage, limits: LimitsConfig): void {
  if (req.rawHeaders.length / 2 > limits.max_headers) {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'too many header fields', { status: 431 })
  }
}

/** RELIABILITY A5: the URL authority wins over Host; a Host naming something else is worth an audit field. */
function hostMismatch (hostHeader: string | undefined, target: RequestTarget): boolean {
  if (hostHeader === undefined) return false
  try {
    const a = parseAuthority(hostHeader, target.scheme === 'https' ? 443 : 80)
    return a.host !== target.host || a.port !== target.port
  } catch {
    return true
  }
}

function misdirected (): SidekeyError {
  return new SidekeyError('SIDEKEY_MISDIRECTED', 'request authority does not match the CONNECT target', { status: 421 })
}

/**
 * An absolute-form request target (RFC 9112 §3.2.2): only http and https, no userinfo (RFC 9110 §4.2.4), and
 * the authority — not the Host header — decides where the request goes. Origin-form is refused: sidekey never
 * routes by Host (RELIABILITY B8).
 */
export function absoluteTarget (url: string): RequestTarget {
  const scheme = url.startsWith('http://') ? 'http' : url.startsWith('https://') ? 'https' : undefined
  if (scheme === undefined) {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', url.startsWith('/') ? 'origin-form request to a proxy' : 'unsupported request target', { status: 400 })
  }
  const authorityEnd = url.indexOf('/', scheme.length + 3)
  const authority = url.slice(scheme.length + 3, authorityEnd < 0 ? undefined : authorityEnd)
  if (authority.includes('@')) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'userinfo in request target', { status: 400 })
  let parsed: URL
  try { parsed = new URL(url) } catch { throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid request target', { status: 400 }) }
  const host = normalizeHost(parsed.hostname)
  const port = parsed.port === '' ? (scheme === 'https' ? 443 : 80) : Number(parsed.port)
  return { scheme, host, port, pathAndQuery: (parsed.pathname || '/') + parsed.search, tunnel: false }
}
