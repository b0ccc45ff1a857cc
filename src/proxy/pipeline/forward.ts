import type { Credential } from '../../credentials/provider.js'
import type { CredentialUsed } from '../../audit/events.js'
import { egressDenied, SELF, type SidekeyError } from '../../errors.js'
import { pathWithoutQuery } from '../../util/path.js'
import { UpstreamExchange } from '../upstream/exchange.js'
import { inject, scrubberFor, withQueryParam, type InjectRequest } from '../inject/inject.js'
import { CLIENT_ERROR, type MarkedSocket } from '../respond.js'
import { ResponseScrub } from '../scrub/scrub-response.js'
import { failureCode, upstreamError } from '../upstream/upstream.js'
import { UpgradeResponse } from '../ingress/upgrade.js'
import { dialOf } from '../upstream/upstream-target.js'
import { requestBody } from './body.js'
import { round, type RoutedContext } from './context.js'
import type { CredentialSource } from './credential.js'
import { replayOnce } from './replay.js'
import { withTraceparent } from '../../tracing/headers.js'
import { answerFailure, inFlightCap, isSelf, reasonOf, type InFlight } from './shared.js'

/** The upstream side of a routed call: where it is dialled, and the headers every attempt starts from. */
export interface Outbound {
  readonly source: CredentialSource
  /** The port the agent addressed (the tool's port, or the tunnel's): the audit's. */
  readonly port: number
  /** The agent's headers with hop-by-hop and credential-bearing fields removed (headers.ts). */
  readonly headers: string[]
}

/**
 * Sends the call with its credential and relays the answer, scrubbed: injection, the exchange, one replay where a
 * credential can fix the answer, then the relay. Writes the request's `credential.used` (or `egress.denied` when the
 * dial itself is refused).
 */
export async function forward (
  ctx: RoutedContext, out: Outbound, first: Credential, inFlight: InFlight
): Promise<void> {
  const { rt, req, res, tool, method } = ctx
  const { origin } = out.source
  // The tool's `upstream:`: the connection goes there under its TLS name; Host and a token's URL stay the agent's.
  const dial = dialOf(tool.upstream, origin)
  const query = tool.config.inject.query
  const cleanPath = query === undefined ? ctx.path : withQueryParam(ctx.path, query, undefined)
  let credential = first
  let replayed = false
  let release: (() => void) | undefined
  let scrub: ResponseScrub | undefined
  let response: UpstreamExchange | undefined
  ctx.credentialId = credential.id
  try {
    if (isSelf(rt, tool.upstream?.host ?? ctx.target.host, tool.upstream?.port ?? out.port)) {
      throw egressDenied(SELF, 'self')
    }
    release = inFlight.acquire(dial.origin, inFlightCap(rt))
    const mcpBody = ctx.mcp?.body ?? ctx.heldBody
    const body = mcpBody !== undefined ? { kept: mcpBody } : await requestBody(req, rt.config.limits.replay_body_bytes)
    if (body.contentLength !== undefined && body.kept === undefined) {
      out.headers.push('content-length', body.contentLength)
    }
    const gone = new Departure()
    // After a complete answer this is a no-op; before it (h1 disconnect, h2 RST_STREAM) it cancels the upstream
    // request.
    res.once('close', () => gone.abort())
    if (res.destroyed) gone.abort()
    const injected: InjectRequest = {
      method,
      origin,
      agentAuthorization: req.headers.authorization,
      body: body.kept,
      streamed: body.stream !== undefined,
      contentLength: body.contentLength,
      bodyLimit: rt.config.limits.replay_body_bytes,
    }
    const prepared = async (cred: Credential): Promise<{ headers: string[], path: string }> => {
      const headers = out.headers.slice()
      return { headers, path: await inject(tool, cred, headers, cleanPath, injected) }
    }
    const overhead = round(performance.now() - ctx.started)
    if (res instanceof UpgradeResponse) {
      const scrubber = scrubberFor(tool, credential)
      scrub = new ResponseScrub(scrubber, tool.config.scrub_body === true)
      await forwardUpgrade(ctx, res, { ...dial, credential, scrub, scrubber, overhead, ...await prepared(credential) })
      return
    }
    const send = async (cred: Credential): Promise<UpstreamExchange> => {
      ctx.credentialId = cred.id
      const { headers, path } = await prepared(cred)
      // Until the answer's head: the connection (its own span, when one is opened) and time to the first byte.
      const upstream = ctx.span.child('upstream request', true)
      withTraceparent(headers, upstream)
      rt.tracing?.dialing(upstream)
      let exchange: UpstreamExchange
      try {
        const sent = body.kept ?? body.stream ?? null
        // Every key written out, never spread: a spread here left V8 re-learning the object's shape on each call.
        const opts = { origin: dial.origin, servername: dial.servername, path, method, headers, body: sent }
        exchange = UpstreamExchange.start(rt.upstream, opts)
      } finally {
        rt.tracing?.dialing(undefined)
      }
      try {
        const head = await gone.watch(exchange).head
        upstream.set('http.response.status_code', head.statusCode)
        return head
      } finally {
        upstream.end()
      }
    }
    const streamed = body.stream !== undefined
    const firstTry = { response: await send(credential), credential, send, streamed }
    ;({ response, credential, replayed } = await replayOnce(ctx, out.source, firstTry))
    scrub = new ResponseScrub(scrubberFor(tool, credential), tool.config.scrub_body === true, ctx.mcp?.filter,
      ctx.budget?.observe)
    const relay = ctx.span.child('scrubbed relay')
    const bytesOut = await scrub.relay(res, method, response)
    relay.end()
    ctx.used(response.statusCode, {
      overhead_ms: overhead, bytes_out: bytesOut, ...(replayed ? { replayed } : {}), ...echoed(scrub),
    })
  } catch (err) {
    failed(ctx, out, err, replayed, scrub)
  } finally {
    // An answer left unread by a failure on our side is cut, so its connection does not wait on it.
    response?.release()
    release?.()
    // Tokens spent upstream are counted whether or not the answer reached its end.
    ctx.budget?.settle(response?.statusCode)
  }
}

/**
 * WebSocket: audited when answered (the 101, or the upstream's refusal), not when the socket closes. A message
 * holding the credential later is its own event, tied to this one by request_id.
 */
async function forwardUpgrade (ctx: RoutedContext, res: UpgradeResponse, up: UpgradeCall): Promise<void> {
  const { tool, method } = ctx
  const rewrite = tool.config.scrub_body === true
  const found = (from: 'upstream' | 'agent'): void => {
    ctx.later({
      event: 'credential.echoed',
      tool: tool.name,
      credential_id: up.credential.id,
      method,
      host: ctx.target.host,
      path: pathWithoutQuery(ctx.path),
      client: ctx.client,
      request_id: ctx.requestId,
      echoed: ['ws'],
      from,
      replaced: from === 'upstream' && rewrite,
      ...(ctx.task === undefined ? {} : { task: ctx.task }),
    })
  }
  const { origin, servername, headers, path, scrub, scrubber } = up
  const status = await res.forward(ctx.rt.upstream, {
    origin, servername, path, method, headers, scrub, messages: { scrubber, rewrite, found },
  })
  ctx.used(status, { overhead_ms: up.overhead, ...echoed(scrub) })
}

interface UpgradeCall {
  readonly origin: string
  readonly servername?: string
  readonly credential: Credential
  readonly scrub: ResponseScrub
  readonly scrubber: ReturnType<typeof scrubberFor>
  readonly overhead: number
  readonly headers: string[]
  readonly path: string
}

/**
 * Audits a call that failed: as the clientError answer it got, as a refusal at dial time, or as an upstream failure.
 */
function failed (
  ctx: RoutedContext, out: Outbound, err: unknown, replayed: boolean, scrub: ResponseScrub | undefined
): void {
  const again = replayed ? { replayed } : {}
  // A body that failed mid-stream (broken framing, request timeout) was answered by listener.ts's clientError.
  const answered = (ctx.req.socket as MarkedSocket | null)?.[CLIENT_ERROR]
  if (answered !== undefined) {
    ctx.res.destroy()
    const error = `SIDEKEY_BAD_REQUEST:${answered.code}`
    ctx.used(answered.status, { outcome: 'bad_request', error, ...again, ...echoed(scrub) })
    return
  }
  const status = answerFailure(ctx, err)
  const e = upstreamError(err)
  // Refused at dial time (an unpinned name resolving to a private address, or sidekey itself): audited with its reason.
  if (e.code === 'SIDEKEY_EGRESS_DENIED') ctx.denied(reasonOf(e), out.port)
  else ctx.used(status, { ...failure(e, err), ...again, ...echoed(scrub) })
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

function failure (e: SidekeyError, err: unknown): Pick<CredentialUsed, 'outcome' | 'error'> & { detail?: string } {
  const detail = e.details.detail
  const described = typeof detail === 'string' ? { detail } : {}
  return { outcome: OUTCOMES[e.code] ?? 'upstream_error', error: failureCode(err), ...described }
}
