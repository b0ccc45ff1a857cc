import { createSecureServer, type Http2SecureServer, type Http2ServerRequest } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { EventEmitter } from 'node:events'
import type { Test } from 'tap'
import { tlsThroughTunnel } from '../helpers/connect.js'

export interface H2Seen { httpVersion: string, url: string, headers: Http2ServerRequest['headers'], body: Buffer }

export interface H2Upstream {
  port: number
  seen: H2Seen[]
  /** Requests to `/hang` that were cancelled by the proxy before an answer. */
  cancelled: number
  /** Emits 'cancelled' for each of them. */
  events: EventEmitter
  close (): Promise<void>
}

/**
 * An HTTPS upstream that speaks h2 and HTTP/1.1 (ALPN), answering a JSON echo of the protocol version, path and
 * body size. `/hang` never answers: it stands for a slow upstream while an agent resets its streams.
 */
export async function startH2Upstream (tls: { certPem: string, keyPem: string }): Promise<H2Upstream> {
  const state: H2Upstream = { port: 0, seen: [], cancelled: 0, events: new EventEmitter(), close: async () => {} }
  const server: Http2SecureServer = createSecureServer({ allowHTTP1: true, cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const seen = { httpVersion: req.httpVersion, url: req.url, headers: req.headers, body: Buffer.concat(chunks) }
      state.seen.push(seen)
      if (req.url.startsWith('/hang')) {
        res.on('close', () => { state.cancelled++; state.events.emit('cancelled') })
        return
      }
      const body = JSON.stringify({ httpVersion: req.httpVersion, url: req.url, bytes: seen.body.length })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  const sessions = new Set<{ destroy (): void }>()
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)) })
  const sockets = new Set<{ destroy (): void }>()
  server.on('secureConnection', (s: TLSSocket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.port = (server.address() as AddressInfo).port
  state.close = () => new Promise((resolve) => {
    for (const s of sessions) s.destroy()
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  })
  return state
}

/** Raw HTTP/2 frames (RFC 9113 §4.1) for attacks that no well-behaved client library will send. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

export function frame (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4 } as const

/** HPACK integer (RFC 7541 §5.1) with an N-bit prefix; `high` holds the bits above the prefix. */
function int (n: number, prefixBits: number, high = 0): Buffer {
  const max = (1 << prefixBits) - 1
  if (n < max) return Buffer.from([high | n])
  const bytes = [high | max]
  for (n -= max; n >= 128; n = Math.floor(n / 128)) bytes.push((n % 128) | 128)
  bytes.push(n)
  return Buffer.from(bytes)
}

/** HPACK string literal, no Huffman. */
function str (s: string): Buffer {
  return Buffer.concat([int(s.length, 7), Buffer.from(s)])
}

/** An HPACK block for `GET https://authority/path`: static-table :method/:scheme, literal :path and :authority. */
export function getBlock (authority: string, path: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x82, 0x87]), // :method GET, :scheme https
    Buffer.from([0x04]), str(path), // :path, literal without indexing, indexed name 4
    Buffer.from([0x01]), str(authority), // :authority, literal without indexing, indexed name 1
  ])
}

/** One literal header field (new name, without indexing): a CONTINUATION fragment that decodes on its own. */
export function literalField (name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), str(name), str(value)])
}

/** A literal header field with a new name that the decoder adds to its dynamic table (RFC 7541 §6.2.1). */
export function indexedLiteralField (name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), str(name), str(value)])
}

/** An indexed header field (§6.1): one byte that the decoder expands to a whole table entry. */
export function indexedField (index: number): Buffer {
  return int(index, 7, 0x80)
}

/** Collects frame types and GOAWAY error codes from the server side of a raw h2 connection. */
export class FrameLog {
  #buf = Buffer.alloc(0)
  readonly types: number[] = []
  readonly goawayCodes: number[] = []
  push (chunk: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, chunk])
    while (this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3)
      if (this.#buf.length < 9 + len) break
      const type = this.#buf[3]!
      this.types.push(type)
      if (type === FRAME.GOAWAY) this.goawayCodes.push(this.#buf.readUInt32BE(9 + 4))
      this.#buf = this.#buf.subarray(9 + len)
    }
  }
}

/** A raw h2 connection through the proxy's CONNECT tunnel to `host:port` (TLS with its CA, ALPN h2), preface sent. */
export async function rawH2 (t: Test, proxyPort: number, host: string, port: number, caPem: string): Promise<{ socket: TLSSocket, log: FrameLog, closed: Promise<unknown> }> {
  const socket = await tlsThroughTunnel(proxyPort, `${host}:${port}`, { servername: host, ca: caPem, alpn: ['h2'] })
  t.teardown(() => socket.destroy())
  const log = new FrameLog()
  socket.on('data', (c: Buffer) => log.push(c))
  socket.on('error', () => {})
  // Resolves on close whatever came first: the proxy may reset the connection while a flood is still being written
  // (EPIPE), and events.once would reject on that error.
  const closed = new Promise((resolve) => socket.once('close', resolve))
  socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]))
  return { socket, log, closed }
}
