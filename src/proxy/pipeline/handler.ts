import type { IncomingMessage, ServerResponse } from 'node:http'
import { egressDenied, NO_TOOL } from '../../errors.js'
import { formatAuthority } from '../../net/host.js'
import { normalizePath } from '../../net/path.js'
import { pathWithoutQuery } from '../../util/path.js'
import { asSidekeyError } from '../respond.js'
import { checkRequestHeaders, upstreamHeaders } from '../headers.js'
import type { Route } from '../router.js'
import type { Runtime } from '../runtime.js'
import { OriginLimiter } from '../upstream/upstream.js'
import type { RequestTarget } from '../ingress/target.js'
import { RequestContext, type RoutedContext } from './context.js'
import { credentialSource, credentialUnavailable } from './credential.js'
import { forward } from './forward.js'
import { passThrough } from './pass-through.js'
import { placeholderState } from './placeholder.js'
import { firstRefusal, policyOf } from './policy.js'
import { defaultPort } from './shared.js'

/**
 * The request path, in stages: route → policy steps → credential → injection and exchange (with one replay) →
 * scrubbed relay. Every request ends in exactly one audit event, written by its RequestContext; errors reach the
 * agent only through respond.ts.
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
    const ctx = new RequestContext(this.#runtime(), req, res, target, client, this.#ids())
    const route = routeOf(ctx)
    if (route === undefined) return
    if (route.kind === 'none') {
      const unmatched = ctx.rt.config.egress.unmatched
      // A tunnel reaches here only when it was intercepted: tool hosts, and every host in inventory mode.
      if (unmatched === 'inventory' || (unmatched === 'tunnel' && !target.tunnel)) {
        await passThrough(ctx, this.#inFlight)
      } else ctx.refuse({ error: egressDenied(NO_TOOL, 'no_tool'), outcome: 'no_tool' })
      return
    }
    ctx.tool = route.tool
    const routed = ctx as RoutedContext
    const port = route.upstreamPort
    const scheme = route.upstreamScheme
    const authority = formatAuthority(target.host, port, defaultPort(scheme))
    const { headers, placeholder } = upstreamHeaders(req.rawHeaders, route.tool, authority)
    ctx.placeholder = placeholderState(routed, placeholder)
    const verdict = firstRefusal(routed, policyOf(route.tool))
    const refusal = verdict instanceof Promise ? await verdict : verdict
    if (refusal !== undefined) return ctx.refuse(refusal)
    const source = credentialSource(routed, `${scheme}://${authority}`)
    const waited = ctx.span.child('credential')
    const credential = source.next()
    waited.end()
    if (credential === undefined) return ctx.refuse(credentialUnavailable(routed))
    await forward(routed, { source, port, headers }, credential, this.#inFlight)
  }
}

/** The task header and the one normal form of the path, then the tool they route to; a bad request is refused here. */
function routeOf (ctx: RequestContext): Route | undefined {
  const { target } = ctx
  try {
    ctx.task = checkRequestHeaders(ctx.req.rawHeaders)
    ctx.path = normalizePath(target.pathAndQuery)
    return ctx.rt.router.route(target.scheme, target.host, target.port, pathWithoutQuery(ctx.path))
  } catch (err) {
    const e = asSidekeyError(err)
    ctx.refuse({ error: e, outcome: e.details.reason === 'bad_task' ? 'bad_task' : 'bad_request' })
    return undefined
  }
}
