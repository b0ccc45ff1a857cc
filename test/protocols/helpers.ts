import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import { createSecureServer } from 'node:http2'
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import { createHash } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { until } from '../helpers/until.js'

/** RFC 6455 §1.3: the server proves it read the key. */
export function acceptKey (key: string): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
}

/** One WebSocket frame (RFC 6455 §5.2); clients mask, servers do not. */
export function encodeFrame (opcode: number, payload: Buffer, masked: boolean): Buffer {
  const len = payload.length
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + ext + (masked ? 4 : 0))
  head[0] = 0x80 | opcode
  head[1] = (masked ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127)
  if (ext === 2) head.writeUInt16BE(len, 2)
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2)
  if (!masked) return Buffer.concat([head, payload])
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78])
  mask.copy(head, 2 + ext)
  const body = Buffer.from(payload)
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!
  return Buffer.concat([head, body])
}

export interface Frame { opcode: number, payload: Buffer }

/** Splits a byte stream into frames, unmasking as needed. */
export class FrameReader {
  #buf = Buffer.alloc(0)
  push (chunk: Buffer): Frame[] {
    this.#buf = Buffer.concat([this.#buf, chunk])
    const out: Frame[] = []
    for (;;) {
      const b = this.#buf
      if (b.length < 2) break
      let len = b[1]! & 0x7f
      let off = 2
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); off = 4 } else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); off = 10 }
      const masked = (b[1]! & 0x80) !== 0
      const total = off + (masked ? 4 : 0) + len
      if (b.length < total) break
      const payload = Buffer.from(b.subarray(total - len, total))
      if (masked) { const m = b.subarray(off, off + 4); for (let i = 0; i < payload.length; i++) payload[i]! ^= m[i % 4]! }
      out.push({ opcode: b[0]! & 0x0f, payload })
      this.#buf = b.subarray(total)
    }
    return out
  }
}

export interface WsSeen { url: string, headers: IncomingMessage['headers'], rawHeaders: string[] }

export interface WsUpstream {
  port: number
  seen: WsSeen[]
  server: Server | ReturnType<typeof createSecureServer>
  close (): Promise<void>
}

/**
 * A WebSocket echo server on 127.0.0.1:0: completes the handshake, greets with `hello`, echoes text and binary
 * frames (prefixed `echo:`), answers ping and close. `/refuse...` answers 403 with a JSON body instead of 101.
 * With `tls` it is an HTTP/2-capable secure server (ALPN h2 + http/1.1), so an upgrade must pick HTTP/1.1.
 */
export async function startWsUpstream (opts: { tls?: { certPem: string, keyPem: string } } = {}): Promise<WsUpstream> {
  const seen: WsSeen[] = []
  const sockets = new Set<Duplex>()
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    seen.push({ url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders })
    if ((req.url ?? '').startsWith('/refuse')) {
      const body = '{"error":"nope"}'
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nx-upstream: yes\r\nconnection: close\r\n\r\n${body}`)
      return
    }
    const protocol = req.headers['sec-websocket-protocol']?.split(',')[0]?.trim()
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
      `sec-websocket-accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n` +
      (protocol === undefined ? '' : `sec-websocket-protocol: ${protocol}\r\n`) + '\r\n')
    socket.write(encodeFrame(1, Buffer.from('hello'), false))
    const reader = new FrameReader()
    const onData = (chunk: Buffer): void => {
      for (const f of reader.push(chunk)) {
        if (f.opcode === 1 || f.opcode === 2) socket.write(encodeFrame(f.opcode, Buffer.concat([Buffer.from('echo:'), f.payload]), false))
        else if (f.opcode === 9) socket.write(encodeFrame(10, f.payload, false))
        else if (f.opcode === 8) { socket.end(encodeFrame(8, f.payload, false)); return }
      }
    }
    if (head.length > 0) onData(head)
    socket.on('data', onData)
  }
  const server = opts.tls === undefined
    ? createHttpServer((_req, res) => { res.writeHead(426); res.end() })
    : createSecureServer({ allowHTTP1: true, cert: opts.tls.certPem, key: opts.tls.keyPem }, (_req, res) => { res.writeHead(426); res.end() })
  server.on('upgrade', onUpgrade)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    server,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy()
      if ('closeAllConnections' in server) server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** Reads an HTTP/1.1 response head from a socket; returns it and what followed. */
export function readHead (socket: Duplex): Promise<{ status: number, headers: Record<string, string>, rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('error', reject)
      socket.off('close', onClose)
      socket.pause()
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
      const headers: Record<string, string> = {}
      for (const line of lines.slice(1)) {
        const c = line.indexOf(':')
        headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim()
      }
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers, rest: buf.subarray(end + 4) })
    }
    const onClose = (): void => reject(new Error(`closed before a response head: ${JSON.stringify(buf.toString('latin1'))}`))
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', onClose)
    socket.resume()
  })
}

/** Reads until the peer closes; what it got. */
export function readAll (socket: Duplex, first: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks = [first]
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.once('close', () => resolve(Buffer.concat(chunks)))
    socket.on('error', () => {})
    socket.resume()
  })
}

/** A raw TCP connection to the proxy. */
export function connectTo (port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port }, () => { s.off('error', reject); resolve(s) })
    s.once('error', reject)
  })
}

/** A WebSocket handshake request; `target` is the request-target (absolute-form to the proxy, or origin-form in a tunnel). */
export function handshake (target: string, host: string, extra: Record<string, string> = {}): string {
  const lines = [`GET ${target} HTTP/1.1`, `Host: ${host}`, 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`)]
  return lines.join('\r\n') + '\r\n\r\n'
}

/**
 * The first audit line matching `pred`, waiting for it: the audit line of an exchange is written when the proxy
 * has finished it, which can be just after the client has its answer. Undefined if none came within the bound.
 */
export async function auditLine (log: { lines: Array<Record<string, unknown>> }, pred: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown> | undefined> {
  await until(() => log.lines.some(pred), 'an audit line').catch(() => {})
  return log.lines.find(pred)
}
