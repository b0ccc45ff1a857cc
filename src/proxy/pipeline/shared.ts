import { SidekeyError } from '../../errors.js'
import { targetsSelf } from '../../net/self.js'
import { sendError } from '../respond.js'
import type { Runtime } from '../runtime.js'
import { upstreamError } from '../upstream/upstream.js'
import type { RequestContext } from './context.js'

/** Counts exchanges in flight per upstream origin (upstream.ts's OriginLimiter), shared by every request. */
export interface InFlight {
  acquire (origin: string, max: number): () => void
}

/** Exchanges allowed in flight per upstream origin: its connections plus the queue behind them. */
export function inFlightCap (rt: Runtime): number {
  return rt.config.limits.upstream_connections + rt.config.limits.upstream_pending
}

/** The proxy's own ports on this machine are never a destination (threat model: the agent, open proxy). */
export function isSelf (rt: Runtime, host: string, port: number): boolean {
  return targetsSelf(host, port, rt.ownPorts, rt.resolver.pins)
}

/** The audit reason a refusal carries (every egressDenied has one). */
export function reasonOf (e: SidekeyError): string {
  return typeof e.details.reason === 'string' ? e.details.reason : 'other'
}

export function defaultPort (scheme: 'http' | 'https'): number {
  return scheme === 'https' ? 443 : 80
}

/**
 * Answers a failed exchange and returns the status the agent saw; once the response has started, the only honest
 * answer is to cut it. A tool's failure names the tool, as credential_unavailable does.
 */
export function answerFailure (ctx: RequestContext, err: unknown): number {
  const { res } = ctx
  if (res.headersSent) {
    res.destroy()
    return res.statusCode
  }
  const e = upstreamError(err)
  const tool = ctx.tool?.name
  const named = tool === undefined || e.details.tool !== undefined
    ? e
    : new SidekeyError(e.code, e.message, {
      expose: e.expose, details: { tool, ...e.details }, proxyStatus: e.proxyStatus, cause: e.cause,
    })
  sendError(res, named, ctx.requestId)
  return e.status
}
