import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, LookupFunction, Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import { pipeline } from 'node:stream/promises'
import { Agent } from 'undici'
import type { LeafCache } from '../../src/tls/leaf-cache.js'

/**
 * The in-run floor: the least a forwarder with the same job can do. Absolute-form HTTP and CONNECT with TLS
 * interception through sidekey's own LeafCache, one undici Agent upstream (same pool size as sidekey's default),
 * hop-by-hop headers dropped and a fixed Authorization injected. No config, routing, audit, metrics or limits.
 */

const HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'authorization'])
/** About the length of a local_jwt bearer token, so both proxies move the same header bytes. */
const TOKEN = 'Bearer ' + 'e'.repeat(560)

export interface BareForwarder {
  readonly port: number
  close (): Promise<void>
}

export async function startBare (leaves: LeafCache, upstreamCa: string, lookup: LookupFunction): Promise<BareForwarder> {
  const agent = new Agent({ connections: 64, pipelining: 1, keepAliveTimeout: 30_000, connect: { ca: upstreamCa, lookup } })
  const tunnels = new WeakMap<object, string>()

  const forward = async (req: IncomingMessage, res: ServerResponse, origin: string, path: string, host: string): Promise<void> => {
    const headers: string[] = ['host', host]
    const raw = req.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!)
    headers.push('authorization', TOKEN)
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
    try {
      const up = await agent.request({ origin, path, method: req.method as 'GET', headers, body: hasBody ? req : null })
      const out: string[] = []
      for (const [k, v] of Object.entries(up.headers)) {
        if (v === undefined || k === 'connection' || k === 'keep-alive' || k === 'transfer-encoding') continue
        if (Array.isArray(v)) for (const x of v) out.push(k, x)
        else out.push(k, v)
      }
      res.writeHead(up.statusCode, out)
      await pipeline(up.body, res)
    } catch {
      if (!res.headersSent) { res.writeHead(502); res.end() } else res.destroy()
    }
  }

  const inner = createServer((req, res) => {
    const authority = tunnels.get(req.socket)
    if (authority === undefined) { res.destroy(); return }
    void forward(req, res, `https://${authority}`, req.url ?? '/', authority)
  })
  const outer: Server = createServer((req, res) => {
    let url: URL
    try { url = new URL(req.url ?? '') } catch { res.writeHead(400); res.end(); return }
    void forward(req, res, url.origin, url.pathname + url.search, url.host)
  })
  outer.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const authority = req.url ?? ''
    const host = authority.slice(0, authority.lastIndexOf(':'))
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    leaves.secureContext(host).then((secureContext) => {
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
