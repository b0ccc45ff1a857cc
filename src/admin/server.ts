import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHash, timingSafeEqual } from 'node:crypto'
import { SidekeyError } from '../errors.js'
import type { CredentialProvider } from '../credentials/provider.js'
import type { AdminDenied, AuditSink } from '../audit/events.js'
import { listen } from '../util/listen.js'
import { systemClock, type Clock } from '../util/clock.js'
import { RotateLimiter } from './rotate-limit.js'
import type { ApprovalDesk } from '../approvals/index.js'
import { decideApproval } from './approvals.js'

export interface AdminDeps {
  /** The credentials of the config in force (changes on reload). */
  readonly credentials: () => CredentialProvider
  readonly metrics: () => Promise<{ contentType: string, body: string }>
  readonly caPem: () => string
  /** The public audit key as a JWKS; undefined when the log is not chained. */
  readonly auditKeys?: () => { keys: readonly object[] } | undefined
  /** Reloads the config; rejects with a ConfigError (problems without secrets) when the new one is bad. */
  readonly reload: () => Promise<void>
  /**
   * SHA-256 of the admin token (`admin.token_file`, else the file sidekey made beside the CA): every POST needs it as
   * a Bearer token. Undefined refuses every POST.
   */
  readonly tokenDigest: () => Buffer | undefined
  /** Where refused writes are audited (`admin.denied`). */
  readonly audit: AuditSink
  /** For the rotation limit. */
  readonly clock?: Clock
  /** Tools the interception CA cannot cover: /status marks them `servable: false` (reason `ca_constraint`). */
  readonly uncovered?: () => readonly string[]
  /** Fleet control, when configured: its readiness (`required: true`) and its status (active locks). */
  readonly fleet?: () => FleetView | undefined
  /** Where tools with `upstream:` are dialled, by tool: /status shows it as the tool's `upstream`. */
  readonly upstreams?: () => Readonly<Record<string, object>>
  /** Calls held for approval: listed by GET /approvals, decided by POST /approvals/ID. */
  readonly approvals?: () => ApprovalDesk
}

export interface FleetView {
  ready (): boolean
  status (): object
}

/**
 * The admin port: health, readiness, metrics, status, rotation, reload, JWKS, the CA certificate and the audit key.
 * It binds loopback by default and is a different server from the proxy, so no proxied request can reach it.
 */
export class AdminServer {
  readonly #server: Server
  readonly #deps: AdminDeps
  readonly #rotations: RotateLimiter

  constructor (deps: AdminDeps) {
    this.#deps = deps
    this.#rotations = new RotateLimiter(deps.clock ?? systemClock)
    const limits = { headersTimeout: 10_000, requestTimeout: 30_000, maxHeaderSize: 16384 }
    this.#server = createServer(limits, (req, res) => {
      this.#route(req, res).catch((err: unknown) => send(res, statusOf(err), { error: codeOf(err) }))
    })
    this.#server.keepAliveTimeout = 5000
  }

  listen (host: string, port: number): Promise<AddressInfo> {
    return listen(this.#server, host, port)
  }

  close (): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }

  async #route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid')
    const path = url.pathname
    const method = req.method ?? 'GET'
    if (method === 'POST') {
      if (!this.#authorized(req)) {
        this.#denied(req, path, { reason: 'unauthorized' })
        send(res, 401, { error: 'unauthorized' }, { 'www-authenticate': 'Bearer realm="sidekey-admin"' })
        return
      }
      if (path === '/reload') {
        try {
          await this.#deps.reload()
          send(res, 200, { reloaded: true })
        } catch (err) {
          type Problem = { file: string, line: number, col: number, message: string }
          const problems = (err as { problems?: readonly Problem[] }).problems
          const lines = (problems ?? []).map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`)
          send(res, 400, { error: 'config_invalid', problems: lines })
        }
        return
      }
      const rotate = /^\/rotate\/([^/]+)$/.exec(path)
      if (rotate !== null) {
        const tool = decodeTool(rotate[1]!)
        const credentials = this.#deps.credentials()
        const status = credentials.status()
        if (!Object.hasOwn(status, tool)) {
          send(res, 404, { error: 'unknown_tool', tool })
          return
        }
        // Tools sharing one credential share its limit: rotating any of them fetches that one credential.
        const wait = this.#rotations.take([tool, ...status[tool]!.shared_with])
        if (wait > 0) {
          this.#denied(req, path, { reason: 'rate_limited', retry_after_s: wait })
          send(res, 429, { error: 'rotate_rate_limited', tool, retry_after: wait }, { 'retry-after': String(wait) })
          return
        }
        try {
          const c = await credentials.rotate(tool, { revokePrevious: url.searchParams.get('revoke') === 'previous' })
          const expiresAt = c.expiresAt === undefined ? null : iso(c.expiresAt)
          send(res, 200, { tool, credential_id: c.id, issued_at: iso(c.issuedAt), expires_at: expiresAt })
        } catch (err) {
          const unknown = statusOf(err) === 404
          send(res, unknown ? 404 : 502, { error: unknown ? 'unknown_tool' : 'rotation_failed', tool })
        }
        return
      }
      const approval = /^\/approvals\/([^/]+)$/.exec(path)
      const desk = this.#deps.approvals?.()
      if (approval !== null && desk !== undefined) {
        const answer = await decideApproval(desk, decodeTool(approval[1]!), req)
        send(res, answer.status, answer.body)
        return
      }
      send(res, 404, { error: 'not_found' })
      return
    }
    if (method !== 'GET' && method !== 'HEAD') {
      send(res, 405, { error: 'method_not_allowed' }, { allow: 'GET, HEAD, POST' })
      return
    }
    switch (path) {
      case '/healthz':
        send(res, 200, { status: 'ok' })
        return
      case '/readyz': {
        const unready = this.#deps.credentials().unready()
        // A lock never makes the pod unready (a restart would come back to the same lock); an unread fleet state does.
        const fleetReady = this.#deps.fleet?.()?.ready() ?? true
        if (unready.length === 0 && fleetReady) send(res, 200, { ready: true })
        else send(res, 503, { ready: false, tools: unready, ...(fleetReady ? {} : { fleet: 'not_synced' }) })
        return
      }
      case '/metrics': {
        const m = await this.#deps.metrics()
        res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' })
        res.end(m.body)
        return
      }
      case '/status': {
        const fleet = this.#deps.fleet?.()
        send(res, 200, { tools: this.#status(), ...(fleet === undefined ? {} : { fleet: fleet.status() }) })
        return
      }
      case '/.well-known/jwks.json':
        send(res, 200, { keys: this.#deps.credentials().jwks() }, { 'cache-control': 'max-age=60' })
        return
      case '/audit-key': {
        const jwks = this.#deps.auditKeys?.()
        if (jwks === undefined) send(res, 404, { error: 'not_found' })
        else send(res, 200, jwks, { 'cache-control': 'max-age=60' })
        return
      }
      case '/approvals':
        // The held bodies' previews are the agent's messages: read with the admin token, as decisions are made.
        if (!this.#authorized(req)) {
          send(res, 401, { error: 'unauthorized' }, { 'www-authenticate': 'Bearer realm="sidekey-admin"' })
        } else send(res, 200, { approvals: this.#deps.approvals?.().list() ?? [] })
        return
      case '/ca.pem':
        res.writeHead(200, { 'content-type': 'application/x-pem-file' })
        res.end(this.#deps.caPem())
        return
      default:
        send(res, 404, { error: 'not_found' })
    }
  }

  #status (): Record<string, object> {
    const tools: Record<string, object> = { ...this.#deps.credentials().status() }
    for (const name of this.#deps.uncovered?.() ?? []) {
      if (tools[name] !== undefined) tools[name] = { ...tools[name], servable: false, reason: 'ca_constraint' }
    }
    for (const [name, upstream] of Object.entries(this.#deps.upstreams?.() ?? {})) {
      if (tools[name] !== undefined) tools[name] = { ...tools[name], upstream }
    }
    return tools
  }

  #denied (req: IncomingMessage, path: string, why: Pick<AdminDenied, 'reason' | 'retry_after_s'>): void {
    const rotate = /^\/rotate\/([^/]+)$/.exec(path)
    const route = path === '/reload' ? '/reload' : rotate !== null ? '/rotate' : 'other'
    // Only a configured tool's name: the rest of the path is the caller's text and stays out of the log.
    const named = rotate === null ? undefined : decodeTool(rotate[1]!)
    const tool = named !== undefined && Object.hasOwn(this.#deps.credentials().status(), named) ? named : undefined
    const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    this.#deps.audit.emit({ event: 'admin.denied', route, client, ...why, ...(tool === undefined ? {} : { tool }) })
  }

  #authorized (req: IncomingMessage): boolean {
    const expected = this.#deps.tokenDigest()
    if (expected === undefined) return false
    const header = req.headers.authorization ?? ''
    const m = /^Bearer\s+(.+)$/i.exec(header)
    if (m === null) return false
    // Compare digests: constant time whatever the lengths.
    return timingSafeEqual(createHash('sha256').update(m[1]!.trim()).digest(), expected)
  }
}

function send (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(text)
}

function decodeTool (segment: string): string {
  try { return decodeURIComponent(segment) } catch { return segment }
}

function iso (ms: number): string {
  return new Date(ms).toISOString()
}

function statusOf (err: unknown): number {
  return err instanceof SidekeyError ? err.status : 500
}

function codeOf (err: unknown): string {
  return err instanceof SidekeyError ? err.code : 'SIDEKEY_INTERNAL'
}
