import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createSecureContext } from 'node:tls'

/**
 * Bench child: the loopback upstream, one process serving HTTP and HTTPS with a 1 KiB body (an empty one for the path
 * `/0`), so its CPU is its own. Started by run.ts with an IPC channel: receives `{ certPem, keyPem, sni }` (`sni`:
 * certificates for further names), answers `{ http, https }` (ports); then
 * `'counts'` → connections accepted so far, `{ http, https }`.
 */

export const BODY_BYTES = 1024
/** The path answered with an empty body. */
const EMPTY_PATH = '/0'
const body = Buffer.alloc(BODY_BYTES, 'x')
const empty = Buffer.alloc(0)

function onRequest (req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  const b = req.url === EMPTY_PATH ? empty : body
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': b.length })
  res.end(b)
}

type Pem = { certPem: string, keyPem: string }

process.once('message', (msg: Pem & { sni?: Record<string, Pem> }) => {
  const contexts = new Map(Object.entries(msg.sni ?? {}).map(([name, pem]) => [name, createSecureContext({ cert: pem.certPem, key: pem.keyPem })]))
  const http = createHttpServer({ keepAliveTimeout: 60_000 }, onRequest)
  const https = createHttpsServer({
    cert: msg.certPem,
    key: msg.keyPem,
    keepAliveTimeout: 60_000,
    SNICallback: (name, cb) => { cb(null, contexts.get(name)) },
  }, onRequest)
  let listening = 0
  const ready = (): void => {
    if (++listening < 2) return
    process.send!({ http: (http.address() as AddressInfo).port, https: (https.address() as AddressInfo).port })
  }
  http.listen(0, '127.0.0.1', ready)
  https.listen(0, '127.0.0.1', ready)
  // Connections accepted: shows whether the proxies keep their upstream pools alive.
  const counts = { http: 0, https: 0 }
  http.on('connection', () => { counts.http++ })
  https.on('secureConnection', () => { counts.https++ })
  process.on('message', (m) => { if (m === 'counts') process.send!(counts) })
  process.on('disconnect', () => process.exit(0))
})
