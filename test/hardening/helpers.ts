import * as net from 'node:net'
import { lookup as systemLookup } from 'node:dns'
import type { Test } from 'tap'

/** What came back on one raw connection. */
export interface RawResult {
  /** Everything the proxy wrote, as latin1 text. */
  text: string
  /** Status code of the first response line, if any. */
  status: number | undefined
  /** The proxy closed (or reset) the connection before `waitMs` ran out. */
  closed: boolean
}

export interface RawOptions {
  /** Give up (and destroy the socket) after this long; a bound, not an assertion on timing. Default 5 s. */
  waitMs?: number
  /** Stop as soon as this holds for what was received (for answers on a connection that stays open). */
  until?: (text: string) => boolean
}

/**
 * Opens a TCP connection to 127.0.0.1:port, writes `data` in one write (or each element of an array in its own
 * write, in order), and collects the answer until the peer closes, `until` holds, or `waitMs` passes.
 */
export function raw (port: number, data: string | Buffer | ReadonlyArray<string | Buffer>, opts: RawOptions = {}): Promise<RawResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    let done = false
    const finish = (closed: boolean): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      socket.destroy()
      resolve({ text, status: statusOf(text), closed })
    }
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 5000)
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      if (opts.until?.(Buffer.concat(chunks).toString('latin1')) === true) finish(false)
    })
    socket.on('close', () => finish(true))
    socket.on('error', () => { /* a reset counts as closed */ })
    socket.on('connect', () => {
      const parts = typeof data === 'string' || Buffer.isBuffer(data) ? [data] : data
      for (const p of parts) socket.write(p)
    })
  })
}

export function statusOf (text: string): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text)
  return m === null ? undefined : Number(m[1])
}

/** The JSON body of the first response in `text` (error bodies are small and carry content-length). */
export function bodyOf (text: string): Record<string, unknown> {
  const start = text.indexOf('\r\n\r\n')
  const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, start))
  const body = len === null ? text.slice(start + 4) : text.slice(start + 4, start + 4 + Number(len[1]))
  return JSON.parse(body) as Record<string, unknown>
}

/** One request as a raw upstream read it off the wire. */
export interface WireRequest {
  /** The exact bytes of this request: head, framing and body. */
  bytes: Buffer
  line: string
  /** Header lines as received, in order, name as written. */
  headers: Array<[string, string]>
  /** The decoded body (chunked framing removed). */
  body: Buffer
  /** How the body was framed on the wire. */
  framing: 'none' | 'content-length' | 'chunked'
  /** Which accepted connection (1-based) carried it. */
  connection: number
}

export type RawResponder = (req: WireRequest, socket: net.Socket) => void

export interface RawUpstream {
  port: number
  /** Connections accepted so far. */
  connections: number
  requests: WireRequest[]
  /** Bytes received but not (yet) part of a complete request, over all connections: 0 when framing was exact. */
  pending (): number
  close (): Promise<void>
}

export const okResponder: RawResponder = (_req, socket) => { socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok') }

/**
 * A TCP server speaking just enough HTTP/1.1 to record each request byte for byte (head, framing, body) and to
 * answer with whatever bytes the test wants, including malformed responses.
 */
export async function startRawUpstream (responder: RawResponder = okResponder): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>()
  const buffers = new Map<net.Socket, Buffer>()
  const up: RawUpstream = {
    port: 0,
    connections: 0,
    requests: [],
    close: async () => {},
    pending: () => [...buffers.values()].reduce((n, b) => n + b.length, 0),
  }
  const server = net.createServer((socket) => {
    const connection = ++up.connections
    sockets.add(socket)
    buffers.set(socket, Buffer.alloc(0))
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      let buf = Buffer.concat([buffers.get(socket)!, chunk])
      for (;;) {
        const parsed = parseRequest(buf, connection)
        if (parsed === undefined) break
        buf = buf.subarray(parsed.bytes.length)
        up.requests.push(parsed)
        responder(parsed, socket)
      }
      buffers.set(socket, buf)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  up.port = (server.address() as net.AddressInfo).port
  up.close = () => new Promise((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  })
  return up
}

/** Parses one complete request at the start of `buf`, or undefined when more bytes are needed. */
export function parseRequest (buf: Buffer, connection = 1): WireRequest | undefined {
  const end = buf.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
  const headers = lines.slice(1).map((l): [string, string] => {
    const colon = l.indexOf(':')
    return [l.slice(0, colon), l.slice(colon + 1).trim()]
  })
  const get = (name: string): string | undefined => headers.find(([n]) => n.toLowerCase() === name)?.[1]
  let pos = end + 4
  const te = get('transfer-encoding')
  const cl = get('content-length')
  if (te !== undefined && /chunked\s*$/i.test(te)) {
    const parts: Buffer[] = []
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos)
      if (lineEnd < 0) return undefined
      const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1'), 16)
      pos = lineEnd + 2
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n\r\n', pos - 2)
        if (trailerEnd < 0) return undefined
        pos = trailerEnd + 4
        break
      }
      if (buf.length < pos + size + 2) return undefined
      parts.push(buf.subarray(pos, pos + size))
      pos += size + 2
    }
    return { bytes: buf.subarray(0, pos), line: lines[0]!, headers, body: Buffer.concat(parts), framing: 'chunked', connection }
  }
  if (cl !== undefined) {
    const n = Number(cl)
    if (buf.length < pos + n) return undefined
    return { bytes: buf.subarray(0, pos + n), line: lines[0]!, headers, body: buf.subarray(pos, pos + n), framing: 'content-length', connection }
  }
  return { bytes: buf.subarray(0, pos), line: lines[0]!, headers, body: Buffer.alloc(0), framing: 'none', connection }
}

/** Header values of `name` (any case) in a raw request. */
export function headerValues (req: WireRequest, name: string): string[] {
  return req.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v)
}

function isLoopback (address: string): boolean {
  if (net.isIPv4(address)) return address.startsWith('127.')
  const a = address.toLowerCase()
  return a === '::1' || /^::ffff:127\./.test(a) || /^::ffff:7f[0-9a-f]{2}:/.test(a)
}

export interface EgressGuard {
  /** Non-loopback addresses something in this process tried to connect to (the attempt was refused). */
  readonly attempts: string[]
}

/**
 * Refuses, in this process, every TCP connect to an address outside 127.0.0.0/8 and ::1, and records the address.
 * SSRF tests run the proxy in-process behind it: a proxy bug then shows up as a recorded attempt rather than as
 * traffic leaving the machine, and a test can see which address a correct proxy *would* have dialled.
 * Checks IP literals at connect and names at their lookup result, so a rebinding answer is seen as it is used.
 */
export function guardEgress (t: Test): EgressGuard {
  const proto = net.Socket.prototype as unknown as { connect: (...args: unknown[]) => net.Socket }
  const original = proto.connect
  const guard: EgressGuard = { attempts: [] }
  const refuse = (address: string): NodeJS.ErrnoException => {
    guard.attempts.push(address)
    return Object.assign(new Error(`test egress guard refused ${address}`), { code: 'ECONNREFUSED' })
  }
  proto.connect = function (this: net.Socket, ...args: unknown[]): net.Socket {
    // net.connect() hands over arguments it already normalised (an array); anything else is normalised here.
    const normalize = (net as unknown as { _normalizeArgs: (a: unknown[]) => [Record<string, unknown>, unknown] })._normalizeArgs
    const [options, cb] = Array.isArray(args[0]) ? args[0] as [Record<string, unknown>, unknown] : normalize(args)
    if (options.path !== undefined) return original.apply(this, args)
    const host = String(options.host ?? 'localhost')
    if (net.isIP(host) !== 0) {
      if (isLoopback(host)) return original.apply(this, args)
      const err = refuse(host)
      process.nextTick(() => this.destroy(err))
      return this
    }
    const inner = (options.lookup ?? systemLookup) as (h: string, o: object, c: (...r: unknown[]) => void) => void
    const lookup = (h: string, o: object, callback: (...r: unknown[]) => void): void => {
      inner(h, o, (err: unknown, address: unknown, family: unknown) => {
        if (err !== null && err !== undefined) { callback(err); return }
        const list = Array.isArray(address) ? (address as Array<{ address: string }>).map((a) => a.address) : [String(address)]
        const bad = list.find((a) => !isLoopback(a))
        if (bad !== undefined) { callback(refuse(bad)); return }
        callback(null, address, family)
      })
    }
    const copy = { ...options, lookup }
    return cb === undefined || cb === null ? original.call(this, copy) : original.call(this, copy, cb)
  }
  t.teardown(() => { proto.connect = original })
  return guard
}

/**
 * A `dns.lookup`-compatible resolver for tests: `answers(name, call)` gives the addresses for the n-th lookup of
 * `name` (1-based), so a test can rebind a name between calls. Counts calls per name. Never touches real DNS.
 */
export function fakeDns (answers: (name: string, call: number) => string[] | undefined): { lookup: typeof systemLookup, calls: Map<string, number> } {
  const calls = new Map<string, number>()
  const lookup = ((name: string, options: unknown, callback: unknown): void => {
    const cb = (typeof options === 'function' ? options : callback) as (err: NodeJS.ErrnoException | null, a?: unknown, f?: number) => void
    const opts = (typeof options === 'object' && options !== null ? options : {}) as { all?: boolean }
    const n = (calls.get(name) ?? 0) + 1
    calls.set(name, n)
    const list = answers(name, n)
    process.nextTick(() => {
      if (list === undefined || list.length === 0) {
        cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' }))
        return
      }
      const records = list.map((address) => ({ address, family: net.isIP(address) }))
      if (opts.all === true) cb(null, records)
      else cb(null, records[0]!.address, records[0]!.family)
    })
  }) as unknown as typeof systemLookup
  return { lookup, calls }
}

/** Every way a canary could show up: raw, URL-encoded, and base64 (std and url alphabets) at each byte alignment. */
export function encodings (canary: string): string[] {
  const out = new Set([canary, encodeURIComponent(canary), encodeURIComponent(encodeURIComponent(canary))])
  for (const prefix of ['', 'a', 'aa']) {
    for (const enc of ['base64', 'base64url'] as const) {
      const b = Buffer.from(prefix + canary).toString(enc)
      // Drop the characters the prefix and the padding touch: what is left appears wherever the canary is embedded.
      out.add(b.slice(prefix === '' ? 0 : 4, b.length - 4))
    }
  }
  return [...out]
}

/** The canaries found in `text`, in any of their {@link encodings}, named with the spelling found. */
export function leaks (text: string, canaries: readonly string[]): string[] {
  return canaries.flatMap((c) => encodings(c).filter((e) => text.includes(e)).map((e) => `${c} as ${e}`))
}
