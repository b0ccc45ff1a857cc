import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, LookupFunction, Socket } from 'node:net'
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls'
import { Agent, type Dispatcher } from 'undici'
import type { CertificateAuthority } from '../../src/tls/ca.js'

/**
 * The in-run floor: the leanest forwarder with the same job on the same stack. node:http in (absolute-form, and
 * CONNECT with TLS interception on one leaf per host, minted once), undici `dispatch` out through one Agent (sidekey's
 * default pool size) with a handler on undici 7's controller API, the upstream's raw header list handed to writeHead
 * (less its framing), one injected Authorization. No config, routing, audit, metrics, limits, scrubbing or abort handling.
 */

/** Request headers not forwarded: hop-by-hop, the agent's own authorization, and host (set from the target). */
const DROP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'authorization'])
/** Response headers node's http server writes for its own connection. */
const FRAMING = new Set(['connection', 'keep-alive', 'transfer-encoding'])
/** About the length of a local_jwt bearer token, so both proxies move the same header bytes. */
const TOKEN = 'Bearer ' + 'e'.repeat(560)

export interface BareForwarder {
  readonly port: number
  close (): Promise<void>
}

/** Streams one upstream answer into `res`, pausing undici while `res` is full. */
class Relay implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse
  constructor (res: ServerResponse) { this.#res = res }

  onRequestStart (): void {}

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number): void {
    if (statusCode < 200) return
    // The parser's raw list, flat, as text (writeHead refuses Buffers), less the framing node writes itself.
    const raw = controller.rawHeaders as unknown as Buffer[]
    const out: string[] = []
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toString('latin1')
      if (!FRAMING.has(name.toLowerCase())) out.push(name, raw[i + 1]!.toString('latin1'))
    }
    this.#res.writeHead(statusCode, out)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#res.write(chunk)) {
      controller.pause()
      this.#res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd (): void { this.#res.end() }

  onResponseError (_controller: Dispatcher.DispatchController, _err: Error): void {
    if (this.#res.headersSent) { this.#res.destroy(); return }
    this.#res.writeHead(502)
    this.#res.end()
  }
}

export async function startBare (ca: CertificateAuthority, upstreamCa: string, lookup: LookupFunction): Promise<BareForwarder> {
  const agent = new Agent({ connections: 64, pipelining: 1, keepAliveTimeout: 30_000, connect: { ca: upstreamCa, lookup } })
  const tunnels = new WeakMap<object, string>()
  const leaves = new Map<string, Promise<SecureContext>>()

  const forward = (req: IncomingMessage, res: ServerResponse, origin: string, path: string, host: string): void => {
    const headers: string[] = ['host', host]
    const raw = req.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (!DROP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!)
    headers.push('authorization', TOKEN)
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
    agent.dispatch({ origin, path, method: req.method as Dispatcher.HttpMethod, headers, body: hasBody ? req : null }, new Relay(res))
  }

  const inner = createServer((req, res) => {
    const authority = tunnels.get(req.socket)
    if (authority === undefined) { res.destroy(); return }
    forward(req, res, `https://${authority}`, req.url ?? '/', authority)
  })
  const outer: Server = createServer((req, res) => {
    let url: URL
    try { url = new URL(req.url ?? '') } catch { res.writeHead(400); res.end(); return }
    forward(req, res, url.origin, url.pathname + url.search, url.host)
  })
  const leafFor = (host: string): Promise<SecureContext> => {
    let leaf = leaves.get(host)
    if (leaf === undefined) {
      leaf = ca.mintLeaf(host, 86_400_000).then((l) => createSecureContext({ key: l.keyPem, cert: l.certPem + ca.chainPem }))
      leaves.set(host, leaf)
    }
    return leaf
  }
  outer.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const authority = req.url ?? ''
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    leafFor(authority.slice(0, authority.lastIndexOf(':'))).then((secureContext) => {
      const tls = new TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] })
      tls.on('error', () => { tls.destroy(); socket.destroy() })
      tunnels.set(tls, authority)
      inner.emit('connection', tls)
    }, () => socket.destroy())
  })
  await new Promise<void>((resolve) => outer.listen(0, '127.0.0.1', resolve))
  return {
    port: (outer.address() as AddressInfo).port,
    close: async () => {
      outer.closeAllConnections()
      inner.closeAllConnections()
      await new Promise<void>((resolve) => outer.close(() => resolve()))
      await agent.close()
    },
  }
}
