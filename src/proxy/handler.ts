import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { ipFamily } from '../net/family.js'
import type { CredentialUsed, PlaceholderState } from '../audit/events.js'
import type { Credential } from '../credentials/provider.js'
import { egressDenied, NO_TOOL, SELF, SidekeyError } from '../errors.js'
import { resolveChecked } from '../net/resolver.js'
import { isOwnAddress, targetsSelf } from '../net/self.js'
import { formatAuthority } from '../net/host.js'
import { pathWithoutQuery } from '../util/path.js'
import { pathShape } from '../audit/anomaly/path-shape.js'
import { checkRequestHeaders, classifyPlaceholder, downstreamHeaders, upstreamHeaders, wholeValue } from './headers.js'
import { isNonceChallenge } from '../credentials/dpop.js'
import { awsAccessKeyId, inject, queryParam, scrubberFor, withQueryParam, type InjectRequest } from './inject.js'
import { methodRefusal } from './methods.js'
import { ResponseScrub } from './scrub-response.js'
import { asSidekeyError, CLIENT_ERROR, sendError, type MarkedSocket } from './respond.js'
import type { Route, Tool } from './router.js'
import { normalizePath } from '../net/path.js'
import { checkPassThrough, connectPortAllowed, type Runtime } from './runtime.js'
import { failureCode, OriginLimiter, relay, upstreamError } from './upstream.js'
import { UpstreamExchange } from './exchange.js'
import { UpgradeResponse } from './upgrade.js'
import { dialOf } from './upstream-target.js'
import { checkMcpRequest, mcpBodyTooLarge, mcpPolicyOf, mcpResponseFilter, readWholeBody, sendMcpRefusal, type McpCheck } from '../mcp/index.js'

/** Where a request goes, as the agent addressed it (absolute-form URL, or the CONNECT target of its tunnel). */
export interface RequestTarget {
  readonly scheme: 'http' | 'https'
  readonly host: string
  readonly port: number
  /** Origin-form path and query as the agent sent it. */
  readonly pathAndQuery: string
  /** Inside an intercepted CONNECT tunnel. */
  readonly tunnel: boolean
  /** The Host header named another authority than the absolute-form URL (which wins, RFC 9112 §3.2.2); audited. */
  readonly hostMismatch?: boolean
}

type Outcome = Pick<CredentialUsed, 'outcome' | 'error'>

/**
 * The request path: match tool → strip → inject → forward → audit. Every request ends in exactly one
 * `credential.used` or `egress.denied` event, and errors reach the agent only through respond.ts.
 */
export class RequestHandler {
  readonly #runtime: () => Runtime
  readonly #ids: () => string
  readonly #inFlight = new OriginLimiter()

  constructor (runtime: () => Runtime, ids: () => string) {
    this.#runtime = runtime
    this.#ids = ids
  }

  async handle (req: IncomingMessage, res: ServerResponse, target: RequestTarget, client: string): Promise<void> {
    const rt = this.#runtime()
    const started = performance.now()
    const requestId = this.#ids()
    const method = req.method ?? 'GET'
    let path = target.pathAndQuery
    let task: string | undefined
    let route: Route
    try {
      task = checkRequestHeaders(req.rawHeaders)
      // One path, one route: matched, audited and sent upstream in the one normal form.
      path = normalizePath(target.pathAndQuery)
      route = rt.router.route(target.scheme, target.host, target.port, pathWithoutQuery(path), method)
    } catch (err) {
      const e = asSidekeyError(err)
      sendError(res, e, requestId)
      const reason = e.details.reason === 'bad_task' ? 'bad_task' : 'bad_request'
      rt.audit.emit({ event: 'egress.denied', host: target.host, port: target.port, reason, client, method, request_id: requestId, path: pathWithoutQuery(target.pathAndQuery) })
      return
    }
    if (route.kind === 'none') {
      const unmatched = rt.config.egress.unmatched
      // A tunnel reaches here only when it was intercepted: tool hosts, and every host in inventory mode.
      if (unmatched === 'inventory' || (unmatched === 'tunnel' && !target.tunnel)) {
        await this.#passThrough(rt, req, res, target, path, client, requestId)
        return
      }
      sendError(res, egressDenied(NO_TOOL, 'no_tool'), requestId)
      rt.audit.emit({ event: 'egress.denied', host: target.host, port: target.port, reason: 'no_tool', client, method, request_id: requestId, path: pathWithoutQuery(path) })
      return
    }
    const tool = route.tool
    const upstream = route.kind === 'tool' ? route.upstream : undefined
    let mcpCall: Pick<CredentialUsed, 'mcp'> = {}
    const used = (status: number, credentialId: string | null, placeholder: PlaceholderState, extra: Partial<CredentialUsed> = {}): void => {
      rt.audit.emit({
        event: 'credential.used', tool: tool.name, credential_id: credentialId, method, host: target.host, path: pathWithoutQuery(path),
        status, duration_ms: round(performance.now() - started), client, placeholder, request_id: requestId,
        ...(target.hostMismatch === true ? { host_mismatch: true } : {}), ...(task === undefined ? {} : { task }),
        ...(upstream === undefined ? {} : { upstream: upstream.origin }), ...mcpCall, ...extra,
      })
    }
    const authority = route.kind === 'tool' ? formatAuthority(target.host, route.upstreamPort, route.upstreamScheme === 'https' ? 443 : 80) : ''
    const base = upstreamHeaders(req.rawHeaders, tool, authority)
    const placeholder = placeholderState(req, tool, path, base.placeholder)
    const refusal = methodRefusal(tool, method, req.rawHeaders)
    if (refusal !== undefined || route.kind === 'method_denied') {
      // methodRefusal judges `match.methods` as the router did: it refuses every method_denied route.
      sendError(res, refusal!.error, requestId, refusal!.headers)
      used(refusal!.error.status, null, placeholder, { outcome: 'method_denied' })
      return
    }
    if (rt.locks.lockOf(tool.name) !== undefined) {
      sendError(res, new SidekeyError('SIDEKEY_TOOL_LOCKED', 'this tool is locked by fleet control', { status: 403, expose: false, details: { tool: tool.name } }), requestId)
      used(403, null, placeholder, { outcome: 'locked' })
      return
    }
    if (tool.config.require_placeholder && placeholder !== 'stripped') {
      sendError(res, new SidekeyError('SIDEKEY_PLACEHOLDER_REQUIRED', 'this tool only accepts calls carrying the placeholder where the credential goes',
        { status: 403, details: { tool: tool.name } }), requestId)
      used(403, null, placeholder, { outcome: 'placeholder_required' })
      return
    }
    const origin = `${route.upstreamScheme}://${authority}`
    // The tool's `upstream:`: the connection goes there under its TLS name; Host and a token's URL stay the agent's.
    const dial = dialOf(upstream, origin)
    const perCall = tool.config.per_call !== undefined
    // A per-call token is bound to what the upstream will see: method, and URL without the query (RFC 9449 htu).
    const credentialFor = (): Credential | undefined => perCall
      ? rt.credentials.mint(tool.name, { method, url: origin + pathWithoutQuery(path), task })
      : rt.credentials.current(tool.name)
    const credential = credentialFor()
    if (credential === undefined) {
      const err = new SidekeyError('SIDEKEY_CREDENTIAL_UNAVAILABLE', 'no valid credential for this tool', { status: 503, details: { tool: tool.name } })
      sendError(res, err, requestId, { 'retry-after': String(rt.credentials.retryAfterSeconds(tool.name)) })
      used(503, null, placeholder, { outcome: 'credential_unavailable' })
      return
    }

    const query = tool.config.inject.query
    const cleanPath = query === undefined ? path : withQueryParam(path, query, undefined)
    let current: Credential = credential
    let replayed = false
    let release: (() => void) | undefined
    let scrub: ResponseScrub | undefined
    let response: UpstreamExchange | undefined
    try {
      if (isSelf(rt, upstream?.host ?? target.host, upstream?.port ?? route.upstreamPort)) throw egressDenied(SELF, 'self')
      release = this.#inFlight.acquire(dial.origin, inFlightCap(rt))
      // MCP policy (src/mcp/): a tool with `mcp:` has each POSTed JSON-RPC body read whole and judged before a
      // credential goes on it; a refusal is answered here and never reaches the server.
      const mcp = mcpPolicyOf(tool.config)
      let mcpCheck: McpCheck | undefined
      let mcpBody: Buffer | undefined
      if (mcp !== undefined && method === 'POST') {
        mcpBody = await readWholeBody(req, rt.config.limits.replay_body_bytes)
        mcpCheck = mcpBody === undefined ? { refusal: mcpBodyTooLarge(), lists: [] } : checkMcpRequest(mcp, req.headers, mcpBody)
        if (mcpCheck.call !== undefined) mcpCall = { mcp: mcpCheck.call }
        if (mcpCheck.refusal !== undefined) {
          sendMcpRefusal(res, mcpCheck.refusal, requestId)
          used(mcpCheck.refusal.status, null, placeholder, { outcome: mcpCheck.refusal.outcome, error: mcpCheck.refusal.code })
          return
        }
      }
      const checked = mcpCheck
      const mcpFilter = mcp === undefined || checked === undefined ? undefined : (type: string | undefined) => mcpResponseFilter(mcp, checked, type)
      const body: RequestBody = mcpBody !== undefined ? { kept: mcpBody } : await requestBody(req, rt.config.limits.replay_body_bytes)
      if (body.contentLength !== undefined && body.kept === undefined) base.headers.push('content-length', body.contentLength)
      const gone = new Departure()
      // After a complete answer this is a no-op; before it (h1 disconnect, h2 RST_STREAM) it cancels the upstream request.
      res.once('close', () => gone.abort())
      if (res.destroyed) gone.abort()
      const injected: InjectRequest = {
        method, origin, agentAuthorization: req.headers.authorization, body: body.kept, streamed: body.stream !== undefined,
        contentLength: body.contentLength, bodyLimit: rt.config.limits.replay_body_bytes,
      }
      const send = async (cred: Credential): Promise<UpstreamExchange> => {
        const headers = base.headers.slice()
        const sentPath = await inject(tool, cred, headers, cleanPath, injected)
        return await gone.watch(UpstreamExchange.start(rt.upstream, { ...dial, path: sentPath, method, headers, body: body.kept ?? body.stream ?? null })).head
      }
      const overhead = performance.now() - started
      if (res instanceof UpgradeResponse) {
        // WebSocket: audited when answered (the 101, or the upstream's refusal), not when the socket closes. A message
        // holding the credential later is its own event, tied to this one by request_id.
        const headers = base.headers.slice()
        const scrubber = scrubberFor(tool, current)
        const rewrite = tool.config.scrub_body === true
        scrub = new ResponseScrub(scrubber, rewrite)
        const wsId = current.id
        const found = (from: 'upstream' | 'agent'): void => {
          rt.audit.emit({
            event: 'credential.echoed', tool: tool.name, credential_id: wsId, method, host: target.host,
            path: pathWithoutQuery(path), client, request_id: requestId, echoed: ['ws'], from,
            replaced: from === 'upstream' && rewrite, ...(task === undefined ? {} : { task }),
          })
        }
        const sentPath = await inject(tool, current, headers, cleanPath, injected)
        const messages = { scrubber, rewrite, found }
        const status = await res.forward(rt.upstream, { ...dial, path: sentPath, method, headers, scrub, messages })
        used(status, current.id, placeholder, { overhead_ms: round(overhead), ...echoed(scrub) })
        return
      }
      response = await send(current)
      if (current.dpop?.observe(origin, response.headerObject(), response.statusCode === 401 && isNonceChallenge(response.headerObject())) === true && body.stream === undefined) {
        // RFC 9449 §9: the tool wants its nonce in the proof; answered once, with the same credential.
        await response.dump()
        response = await send(current)
      }
      if (response.statusCode === 401 && body.stream !== undefined) {
        // The body was streamed, not kept: no replay, but the rejected credential is still refreshed for the next call.
        if (!perCall) void rt.credentials.refreshRejected(tool.name, current.id).catch(() => {})
      } else if (response.statusCode === 401) {
        // A per-call token is never reused: the replay gets a token of its own.
        const fresh = perCall ? credentialFor() : await rt.credentials.refreshRejected(tool.name, current.id)
        if (fresh !== undefined && fresh.id !== current.id) {
          await response.dump()
          current = fresh
          replayed = true
          response = await send(current)
        }
      }
      scrub = new ResponseScrub(scrubberFor(tool, current), tool.config.scrub_body === true, mcpFilter)
      const bytesOut = await scrub.relay(res, method, response)
      used(response.statusCode, current.id, placeholder, { overhead_ms: round(overhead), bytes_out: bytesOut, ...(replayed ? { replayed } : {}), ...echoed(scrub) })
    } catch (err) {
      // A body that failed mid-stream (broken framing, request timeout) was answered by listener.ts's clientError: audit that.
      const answered = (req.socket as MarkedSocket | null)?.[CLIENT_ERROR]
      if (answered !== undefined) {
        res.destroy()
        used(answered.status, current.id, placeholder, { outcome: 'bad_request', error: `SIDEKEY_BAD_REQUEST:${answered.code}`, ...(replayed ? { replayed } : {}), ...echoed(scrub) })
        return
      }
      const status = this.#fail(res, err, requestId, tool.name)
      const e = upstreamError(err)
      if (e.code === 'SIDEKEY_EGRESS_DENIED') {
        // Refused at dial time (an unpinned name resolving to a private address, or sidekey itself): a refusal, counted
        // and audited with its reason like every other.
        rt.audit.emit({ event: 'egress.denied', host: target.host, port: route.upstreamPort, reason: reasonOf(e), client, method, request_id: requestId, path: pathWithoutQuery(path), tool: tool.name })
        return
      }
      used(status, current.id, placeholder, { ...failure(e, err, replayed), ...echoed(scrub) })
    } finally {
      // An answer left unread by a failure on our side is cut, so its connection does not wait on it.
      response?.release()
      release?.()
    }
  }

  /**
   * A destination no tool covers, forwarded untouched with no credential (SSRF checks apply): `egress.unmatched:
   * tunnel` for absolute-form http, audited as `egress.passed`; `inventory` for every request (intercepted tunnels
   * too), audited as `egress.inventory` with where the request carried credentials.
   */
  async #passThrough (rt: Runtime, req: IncomingMessage, res: ServerResponse, target: RequestTarget, path: string, client: string, requestId: string): Promise<void> {
    const method = req.method ?? 'GET'
    const started = performance.now()
    const inventory = rt.inventory
    const carried = inventory?.carried(req.rawHeaders, path)
    const passed = (status: number, error?: string, detail?: string | number): void => {
      const duration = round(performance.now() - started)
      const failed = { ...(error === undefined ? {} : { error }), ...(typeof detail === 'string' ? { detail } : {}) }
      if (inventory === undefined || carried === undefined) {
        rt.audit.emit({ event: 'egress.passed', host: target.host, port: target.port, method, status, client, request_id: requestId, path: pathWithoutQuery(path), duration_ms: duration, ...failed })
        return
      }
      rt.audit.emit({
        event: 'egress.inventory', scheme: target.scheme, host: target.host, port: target.port, method, path: pathShape(path), status, client, request_id: requestId,
        duration_ms: duration, credentials: carried, fingerprint_key: inventory.keyId, ...failed,
      })
    }
    let release: (() => void) | undefined
    let response: UpstreamExchange | undefined
    try {
      // The ports a pass-through may reach: the plain-HTTP default, and what CONNECT may reach (RELIABILITY B1).
      if (target.port !== 80 && !connectPortAllowed(rt, target.port)) throw egressDenied(`port ${target.port} is not allowed (egress.connect_ports)`, 'port')
      checkPassThrough(rt, target.host, target.port)
      const authority = formatAuthority(target.host, target.port, defaultPort(target.scheme))
      release = this.#inFlight.acquire(`${target.scheme}://${authority}`, inFlightCap(rt))
      if (isSelf(rt, target.host, target.port)) throw egressDenied(SELF, 'self')
      const { headers } = upstreamHeaders(req.rawHeaders, undefined, authority)
      const body = await requestBody(req, 0)
      if (body.contentLength !== undefined) headers.push('content-length', body.contentLength)
      const origin = await passThroughOrigin(rt, target.scheme, target.host, target.port)
      response = await UpstreamExchange.start(rt.upstream, { origin, path, method, headers, body: body.kept ?? body.stream ?? null }).head
      res.writeHead(response.statusCode, downstreamHeaders(response.headers))
      await relay(response, res)
      passed(response.statusCode)
    } catch (err) {
      const status = this.#fail(res, err, requestId)
      const e = upstreamError(err)
      if (e.code === 'SIDEKEY_EGRESS_DENIED') rt.audit.emit({ event: 'egress.denied', host: target.host, port: target.port, reason: reasonOf(e), client, method, request_id: requestId })
      else passed(status, failureCode(err), e.details.detail)
    } finally {
      response?.release()
      release?.()
    }
  }

  /** Answers a failed exchange; once the response has started, the only honest answer is to cut it. */
  #fail (res: ServerResponse, err: unknown, requestId: string, tool?: string): number {
    if (res.headersSent) {
      res.destroy()
      return res.statusCode
    }
    const e = upstreamError(err)
    // A tool's failure names the tool, as credential_unavailable does.
    const named = tool === undefined || e.details.tool !== undefined
      ? e
      : new SidekeyError(e.code, e.message, { status: e.status, expose: e.expose, details: { tool, ...e.details }, proxyStatus: e.proxyStatus, cause: e.cause })
    sendError(res, named, requestId)
    return e.status
  }
}

/**
 * Cancels the upstream exchange when the agent leaves before its answer is complete (h1 disconnect, h2 RST_STREAM);
 * after a complete answer, a no-op (the exchange builds its AbortError only when it does cancel).
 */
class Departure {
  aborted = false
  #current: UpstreamExchange | undefined

  /** The exchange to cancel from now on (a 401 replay starts a second one). */
  watch (exchange: UpstreamExchange): UpstreamExchange {
    this.#current = exchange
    if (this.aborted) exchange.cancel()
    return exchange
  }

  abort (): void {
    if (this.aborted) return
    this.aborted = true
    this.#current?.cancel()
  }
}

/** The audit's `echoed`: where the upstream sent the credential back (it reached the agent as the placeholder). */
function echoed (scrub: ResponseScrub | undefined): { echoed?: string[] } {
  const where = scrub?.echoed()
  return where === undefined ? {} : { echoed: where }
}

const OUTCOMES: Partial<Record<string, string>> = {
  SIDEKEY_BAD_REQUEST: 'bad_request', SIDEKEY_CREDENTIAL_UNAVAILABLE: 'credential_unavailable',
}

function failure (e: SidekeyError, err: unknown, replayed: boolean): Outcome & { replayed?: boolean, detail?: string } {
  const detail = e.details.detail
  return { outcome: OUTCOMES[e.code] ?? 'upstream_error', error: failureCode(err), ...(typeof detail === 'string' ? { detail } : {}), ...(replayed ? { replayed } : {}) }
}

/** The audit reason a refusal carries (every egressDenied has one). */
function reasonOf (e: SidekeyError): string {
  return typeof e.details.reason === 'string' ? e.details.reason : 'other'
}

/** Exchanges allowed in flight per upstream origin: its connections plus the queue behind them. */
function inFlightCap (rt: Runtime): number {
  return rt.config.limits.upstream_connections + rt.config.limits.upstream_pending
}

function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}

interface RequestBody {
  /** The whole body, kept so that a 401 can be replayed (small bodies only). */
  kept?: Buffer
  /** The body streamed as it arrives (large or unknown-length bodies), with backpressure. */
  stream?: Readable
  contentLength?: string
}

/**
 * Bodies up to `keepLimit` with a declared length are read whole so a 401 can be replayed; anything else streams
 * with backpressure. A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3).
 */
async function requestBody (req: IncomingMessage, keepLimit: number): Promise<RequestBody> {
  const cl = req.headers['content-length']
  const chunked = req.headers['transfer-encoding'] !== undefined
  if (cl === undefined && !chunked) return {}
  if (cl !== undefined && !chunked && Number(cl) <= keepLimit) {
    if (cl === '0') return { kept: Buffer.alloc(0) }
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    return { kept: Buffer.concat(chunks) }
  }
  const stream = await afterFirstChunk(req)
  return chunked ? { stream } : { stream, contentLength: cl }
}

/**
 * Nothing is dialled before the first body bytes have parsed: a body whose framing is broken from the start (bad
 * chunk size, oversized chunk extension) is refused by the parser before any byte goes upstream (RELIABILITY C1).
 */
async function afterFirstChunk (req: IncomingMessage): Promise<Readable> {
  const it = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const first = await it.next()
  return Readable.from((async function * () {
    if (first.done === true) return
    yield first.value
    for (let next = await it.next(); next.done !== true; next = await it.next()) yield next.value
  })(), { objectMode: false })
}

/**
 * What the agent sent where the credential goes: every spelling of the query parameter, the access key id of its
 * SigV4 signature, or (`stripped`) the headers the tool strips.
 */
function placeholderState (req: IncomingMessage, tool: Tool, path: string, stripped: PlaceholderState): PlaceholderState {
  const { query, aws_sigv4: sigv4 } = tool.config.inject
  if (query !== undefined) return classifyPlaceholder(queryParam(path, query), tool.config.placeholder, wholeValue)
  if (sigv4 !== undefined) {
    const keyId = awsAccessKeyId(req.headers.authorization)
    return classifyPlaceholder(keyId === undefined ? undefined : [keyId], tool.config.placeholder, wholeValue)
  }
  return stripped
}

/** RELIABILITY B7: the proxy's own ports on this machine are never a destination. */
function isSelf (rt: Runtime, host: string, port: number): boolean {
  return targetsSelf(host, port, rt.ownPorts, rt.resolver.pins)
}

/**
 * Where a pass-through request dials. A name on one of sidekey's own ports is resolved here, once, and the checked
 * address is dialled, so a name pointing at this machine cannot loop back into the proxy or reach the admin port.
 */
async function passThroughOrigin (rt: Runtime, scheme: 'http' | 'https', host: string, port: number): Promise<string> {
  if (!rt.ownPorts.has(port) || ipFamily(host) !== 0 || rt.resolver.pins[host] !== undefined) return `${scheme}://${formatAuthority(host, port, defaultPort(scheme))}`
  const address = await resolveChecked(host, rt.lookup)
  if (isOwnAddress(address)) throw egressDenied(SELF, 'self')
  return `${scheme}://${formatAuthority(address, port, defaultPort(scheme))}`
}

function defaultPort (scheme: 'http' | 'https'): number {
  return scheme === 'https' ? 443 : 80
}
