import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadOrCreateCa, type CertificateAuthority } from '../../src/tls/ca.js'

/** What a test upstream saw of one request. */
export interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  rawHeaders: string[]
  body: Buffer
  tls: boolean
}

export interface Upstream {
  port: number
  seen: Seen[]
  server: Server
  close (): Promise<void>
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void

/** Answers every request with a JSON echo of what it saw (no secrets are compared here: the test does that). */
export const echo: UpstreamHandler = (req, res, seen) => {
  const body = JSON.stringify({ method: seen.method, url: seen.url, authorization: req.headers.authorization ?? null, bytes: seen.body.length })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/** A real HTTP or HTTPS server on 127.0.0.1:0 recording every request it receives. */
export async function startUpstream (opts: { tls?: { certPem: string, keyPem: string }, handler?: UpstreamHandler } = {}): Promise<Upstream> {
  const seen: Seen[] = []
  const handler = opts.handler ?? echo
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks), tls: opts.tls !== undefined }
      seen.push(s)
      handler(req, res, s)
    })
  }
  const server = opts.tls === undefined ? createHttpServer(onRequest) : createHttpsServer({ cert: opts.tls.certPem, key: opts.tls.keyPem }, onRequest)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    server,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

/** A CA standing in for a public one, and a certificate from it for the test upstream hosts. */
export interface UpstreamPki {
  ca: CertificateAuthority
  caFile: string
  cert (host: string): Promise<{ certPem: string, keyPem: string }>
}

export async function upstreamPki (): Promise<UpstreamPki> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-upstream-ca-'))
  const ca = await loadOrCreateCa({ dir, validityMs: 86_400_000 * 2 })
  const caFile = join(dir, 'ca.pem')
  return {
    ca,
    caFile,
    async cert (host) {
      const leaf = await ca.mintLeaf(host, 86_400_000)
      return { certPem: leaf.certPem + ca.chainPem, keyPem: leaf.keyPem }
    },
  }
}
