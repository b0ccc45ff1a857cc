import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import { SidekeyError } from '../../errors.js'
import { UpstreamExchange } from '../upstream/exchange.js'
import { downstreamHeaders, fieldValue } from '../headers.js'
import { sendRawError } from '../respond.js'
import type { ResponseScrub } from '../scrub/scrub-response.js'
import type { Scrubber } from '../scrub/scrub.js'
import { messageScrub } from '../scrub/ws-scrub.js'

/** What handler.ts has built for the upstream: the same origin, injected headers and path as any request. */
export interface UpgradeRequest {
  readonly origin: string
  /** The TLS name for a tool's `upstream:` (upstream-target.ts); else the Host header's, as undici picks it. */
  readonly servername?: string
  readonly path: string
  readonly method: string
  /** Flat [name, value, ...] from `upstreamHeaders` + `inject`: hop-by-hop gone, `Sec-WebSocket-*` kept. */
  readonly headers: string[]
  /** Scrubs the 101's headers, or a refusal's headers and body, like any answer. */
  readonly scrub: ResponseScrub
  /** Searches the messages after the 101 for the credential (ws-scrub.ts). */
  readonly messages: MessageSearch
}

export interface MessageSearch {
  readonly scrubber: Scrubber
  /** Replace what the upstream echoes (the tool's `scrub_body`); otherwise only report it. */
  readonly rewrite: boolean
  /** The first message (or control frame) in one direction that held the credential; at most once per direction. */
  readonly found: (from: 'upstream' | 'agent') => void
}

/**
 * Turns an http.Server 'upgrade' event into a request the normal pipeline can serve: a ServerResponse bound to the
 * raw socket, so that every refusal (403, 421, 503, ...) and a refused upgrade are ordinary HTTP answers written by
 * respond.ts and handler.ts. A WebSocket handshake gets an {@link UpgradeResponse}, which handler.ts forwards with
 * `forward()`; any other upgrade (h2c, ...) gets a plain response: it is served as an HTTP/1.1 request without
 * the upgrade, and the connection closes after it. Returns undefined when the request was refused here.
 */
export function upgradeResponse (
  req: IncomingMessage, socket: Socket, head: Buffer, idleMs: number
): ServerResponse | undefined {
  // Node stops watching an upgraded socket: errors are ours now.
  socket.on('error', () => socket.destroy())
  // The parser stops at the end of the headers, so a body would sit unparsed in `head`: refuse it (a desync, as
  // with bytes after a refused CONNECT).
  const cl = req.headers['content-length']
  if ((cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined) {
    sendRawError(socket, new SidekeyError('SIDEKEY_BAD_REQUEST', 'a request body with an upgrade is refused'), '-')
    return undefined
  }
  // Frames the client sent before our 101 are delivered upstream after the upstream's 101.
  if (head.length > 0) socket.unshift(head)
  const res = isWebSocket(req) ? new UpgradeResponse(req, socket, idleMs) : new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket)
  res.once('finish', () => socket.destroySoon())
  return res
}

function isWebSocket (req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade
  return req.method === 'GET' && upgrade !== undefined &&
    upgrade.split(',').some((p) => p.trim().toLowerCase() === 'websocket')
}

/**
 * The agent's side of a WebSocket handshake. `forward()` sends the handshake upstream through the shared upstream
 * dispatcher (same lookup, pins, CA trust and timeouts as every request; origin-dispatcher.ts keeps upgrades on
 * HTTP/1.1). On the upstream's `101` it answers the agent with the upstream's headers and joins the two sockets
 * through a message search each way (ws-scrub.ts; backpressure by `pipe`, `limits.idle_timeout` on both
 * sockets); on any other status it relays that answer with its body.
 *
 * No extension is offered upstream (`Sec-WebSocket-Extensions` is dropped from the agent's handshake): a
 * `permessage-deflate` message could not be searched without inflating it. An upstream that answers with an
 * extension anyway is refused with 502 rather than joined unsearched.
 */
export class UpgradeResponse extends ServerResponse {
  readonly #client: Socket
  readonly #idleMs: number
  readonly #protocol: string

  constructor (req: IncomingMessage, client: Socket, idleMs: number) {
    super(req)
    this.#client = client
    this.#idleMs = idleMs
    this.#protocol = req.headers.upgrade ?? 'websocket'
  }

  /**
   * Resolves with the status the agent got once it is answered: 101 as soon as the sockets are joined (the tunnel
   * then lives on by itself), any other status when its body has been relayed. Rejects when the upstream fails
   * before answering, like `Dispatcher.request`, so handler.ts answers and audits it the same way.
   */
  forward (upstream: Dispatcher, req: UpgradeRequest): Promise<number> {
    return new Promise((resolve, reject) => {
      const exchange = new UpstreamExchange(undefined, (statusCode, headers, socket) => {
        if (fieldValue(headers, 'sec-websocket-extensions') !== undefined) {
          socket.destroy()
          const detail = 'the upstream answered with Sec-WebSocket-Extensions, which sidekey does not offer'
          const message = 'upstream negotiated a WebSocket extension that was not offered'
          reject(new SidekeyError('SIDEKEY_UPSTREAM_FAILED', message, { details: { reason: 'ws_extension', detail } }))
          return
        }
        this.#join(req, headers, socket)
        resolve(statusCode)
      })
      const left = (): void => exchange.cancel(new SidekeyError('SIDEKEY_UPSTREAM_FAILED', 'agent went away'))
      if (this.#client.destroyed) left()
      else this.#client.once('close', left)
      // Any other status: the refusal's body is relayed like any answer's (scrub-response.ts).
      exchange.head.then((answer) => req.scrub.relay(this, req.method, answer))
        .then(() => resolve(exchange.statusCode), reject)
      const headers = withoutExtensions(req.headers)
      const { origin, servername, path, method } = req
      const opts = { origin, servername, path, method, headers, upgrade: this.#protocol }
      upstream.dispatch(opts, exchange)
    })
  }

  /** Writes the upstream's 101 to the agent and joins the sockets; either side closing or erring closes both. */
  #join (req: UpgradeRequest, headers: string[], upstream: Duplex): void {
    const client = this.#client
    const flat = downstreamHeaders(headers)
    flat.push('connection', 'Upgrade', 'upgrade', fieldValue(headers, 'upgrade') ?? this.#protocol)
    req.scrub.headers(flat)
    let head = 'HTTP/1.1 101 Switching Protocols\r\n'
    for (let i = 0; i < flat.length; i += 2) head += `${flat[i]}: ${flat[i + 1]}\r\n`
    head += '\r\n'
    const close = (): void => { client.destroy(); upstream.destroy() }
    upstream.on('error', close)
    upstream.once('close', close)
    client.once('close', close)
    if (client.destroyed) { close(); return }
    client.write(head)
    client.setTimeout(this.#idleMs, close)
    ;(upstream as Partial<Socket>).setTimeout?.(this.#idleMs, close)
    const { scrubber, rewrite, found } = req.messages
    // A broken frame fails the connection both ways: after it, nothing more can be searched.
    const toUpstream = messageScrub(scrubber, false, () => found('agent')).on('error', close)
    const toAgent = messageScrub(scrubber, rewrite, () => found('upstream')).on('error', close)
    client.pipe(toUpstream).pipe(upstream)
    upstream.pipe(toAgent).pipe(client)
  }
}

/** The agent's handshake headers without `Sec-WebSocket-Extensions`: no extension is negotiated (UpgradeResponse). */
function withoutExtensions (flat: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i]!.toLowerCase() !== 'sec-websocket-extensions') out.push(flat[i]!, flat[i + 1]!)
  }
  return out
}
