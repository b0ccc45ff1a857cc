import { pathShape } from '../../secrets/path-shape.js'
import { egressDenied, SELF } from '../../errors.js'
import { formatAuthority } from '../../net/host.js'
import { ipFamily } from '../../net/family.js'
import { resolveChecked } from '../../net/resolver.js'
import { isOwnAddress } from '../../net/self.js'
import { pathWithoutQuery } from '../../util/path.js'
import { downstreamHeaders, upstreamHeaders } from '../headers.js'
import { checkPassThrough, connectPortAllowed, type Runtime } from '../runtime.js'
import { UpstreamExchange } from '../upstream/exchange.js'
import { failureCode, relay, upstreamError } from '../upstream/upstream.js'
import { requestBody } from './body.js'
import type { RequestContext } from './context.js'
import { answerFailure, defaultPort, inFlightCap, isSelf, reasonOf, type InFlight } from './shared.js'

/**
 * A destination no tool covers, forwarded untouched with no credential (SSRF checks apply): `egress.unmatched:
 * tunnel` for absolute-form http, audited as `egress.passed`; `inventory` for every request (intercepted tunnels
 * too), audited as `egress.inventory` with where the request carried credentials.
 */
export async function passThrough (ctx: RequestContext, inFlight: InFlight): Promise<void> {
  const { rt, req, res, target, path } = ctx
  const inventory = rt.inventory
  const carried = inventory?.carried(req.rawHeaders, path)
  const passed = (status: number, error?: string, detail?: string | number): void => {
    const failed = { ...(error === undefined ? {} : { error }), ...(typeof detail === 'string' ? { detail } : {}) }
    const common = {
      host: target.host,
      port: target.port,
      method: ctx.method,
      status,
      client: ctx.client,
      request_id: ctx.requestId,
      duration_ms: ctx.elapsed(),
    }
    if (inventory === undefined || carried === undefined) {
      ctx.passed({ event: 'egress.passed', ...common, path: pathWithoutQuery(path), ...failed })
      return
    }
    ctx.passed({
      event: 'egress.inventory',
      scheme: target.scheme,
      ...common,
      path: pathShape(path),
      credentials: carried,
      fingerprint_key: inventory.keyId,
      ...failed,
    })
  }
  let release: (() => void) | undefined
  let response: UpstreamExchange | undefined
  try {
    // The ports a pass-through may reach: the plain-HTTP default, and what CONNECT may reach.
    if (target.port !== 80 && !connectPortAllowed(rt, target.port)) {
      throw egressDenied(`port ${target.port} is not allowed (egress.connect_ports)`, 'port')
    }
    checkPassThrough(rt, target.host, target.port)
    const authority = formatAuthority(target.host, target.port, defaultPort(target.scheme))
    release = inFlight.acquire(`${target.scheme}://${authority}`, inFlightCap(rt))
    if (isSelf(rt, target.host, target.port)) throw egressDenied(SELF, 'self')
    const { headers } = upstreamHeaders(req.rawHeaders, undefined, authority)
    const body = await requestBody(req, 0)
    if (body.contentLength !== undefined) headers.push('content-length', body.contentLength)
    const origin = await passThroughOrigin(rt, target.scheme, target.host, target.port)
    const sent = { origin, path, method: ctx.method, headers, body: body.kept ?? body.stream ?? null }
    response = await UpstreamExchange.start(rt.upstream, sent).head
    res.writeHead(response.statusCode, downstreamHeaders(response.headers))
    await relay(response, res)
    passed(response.statusCode)
  } catch (err) {
    const status = answerFailure(ctx, err)
    const e = upstreamError(err)
    if (e.code === 'SIDEKEY_EGRESS_DENIED') ctx.denied(reasonOf(e))
    else passed(status, failureCode(err), e.details.detail)
  } finally {
    response?.release()
    release?.()
  }
}

/**
 * Where a pass-through request dials. A name on one of sidekey's own ports is resolved here, once, and the checked
 * address is dialled, so a name pointing at this machine cannot loop back into the proxy or reach the admin port.
 */
async function passThroughOrigin (rt: Runtime, scheme: 'http' | 'https', host: string, port: number): Promise<string> {
  const authority = formatAuthority(host, port, defaultPort(scheme))
  if (!rt.ownPorts.has(port) || ipFamily(host) !== 0 || rt.resolver.pins[host] !== undefined) {
    return `${scheme}://${authority}`
  }
  const address = await resolveChecked(host, rt.lookup)
  if (isOwnAddress(address)) throw egressDenied(SELF, 'self')
  return `${scheme}://${formatAuthority(address, port, defaultPort(scheme))}`
}
