// The WebSocket message search on its own (src/proxy/scrub/ws-scrub.ts over ws-frames.ts): whatever the fragmentation,
// the control frames between fragments, the masking and where the socket cuts the byte stream, the agent reads
// every message with the key replaced (rewrite) or the stream byte for byte (report only), and a find is reported
// once. Frames no peer may send fail the stream.
import t from 'tap'
import fc from 'fast-check'
import type { Transform } from 'node:stream'
import { Scrubber, tokenNeedles } from '../../src/proxy/scrub/scrub.js'
import { messageScrub } from '../../src/proxy/scrub/ws-scrub.js'
import { WsProtocolError } from '../../src/proxy/scrub/ws-frames.js'

const SECRET = 'k3y-0123456789abcdef'
const scrubber = new Scrubber(tokenNeedles(SECRET, 'sidekey'))

/** One frame as a peer writes it (an independent writer: any length form, masked or not, reserved bits). */
function wire (fin: boolean, opcode: number, payload: Buffer, mask?: Buffer, first = 0): Buffer {
  const len = payload.length
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + ext + (mask === undefined ? 0 : 4))
  head[0] = (fin ? 0x80 : 0) | first | opcode
  head[1] = (mask === undefined ? 0 : 0x80) | (ext === 0 ? len : ext === 2 ? 126 : 127)
  if (ext === 2) head.writeUInt16BE(len, 2)
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2)
  if (mask === undefined) return Buffer.concat([head, payload])
  mask.copy(head, 2 + ext)
  return Buffer.concat([head, payload.map((b, i) => b ^ mask[i % 4]!)])
}

interface Read { messages: Array<{ opcode: number, text: string }>, controls: Array<{ opcode: number, text: string }> }

/** Reads unmasked frames back into whole messages (continuations joined) and control frames. */
function read (bytes: Buffer): Read {
  const out: Read = { messages: [], controls: [] }
  let pos = 0
  while (pos < bytes.length) {
    const opcode = bytes[pos]! & 0x0f
    let len = bytes[pos + 1]! & 0x7f
    let off = pos + 2
    if (len === 126) {
      len = bytes.readUInt16BE(off)
      off += 2
    } else if (len === 127) {
      len = Number(bytes.readBigUInt64BE(off))
      off += 8
    }
    const text = bytes.subarray(off, off + len).toString('latin1')
    if (opcode >= 8) out.controls.push({ opcode, text })
    else if (opcode === 0) out.messages.at(-1)!.text += text
    else out.messages.push({ opcode, text })
    pos = off + len
  }
  return out
}

/** Streams `chunks` through a fresh search; what came out and how often a find was reported. */
interface Through { out: Buffer, found: number, error?: Error }

async function through (rewrite: boolean, chunks: readonly Buffer[]): Promise<Through> {
  let found = 0
  const stream: Transform = messageScrub(scrubber, rewrite, () => { found++ })
  const out: Buffer[] = []
  stream.on('data', (c: Buffer) => out.push(c))
  const done = new Promise<Error | undefined>((resolve) => {
    stream.once('end', () => resolve(undefined))
    stream.once('error', resolve)
  })
  for (const c of chunks) stream.write(c)
  stream.end()
  const error = await done
  return { out: Buffer.concat(out), found, ...(error === undefined ? {} : { error }) }
}

/** `bytes` cut at the given points. */
function cut (bytes: Buffer, points: readonly number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let from = 0
  for (const p of [...at, bytes.length]) { out.push(bytes.subarray(from, p)); from = p }
  return out
}

const filler = fc.string({ unit: fc.constantFrom('a', ' ', '.', 'z', '\u00e9'), maxLength: 200 })
const message = fc.record({
  binary: fc.boolean(),
  before: filler,
  keyed: fc.boolean(),
  after: filler,
  /** Where the message is cut into fragments, and a ping after each cut. */
  cuts: fc.array(fc.nat(), { maxLength: 3 }),
  pings: fc.boolean(),
})

t.test('any fragmentation, pings between fragments, masking, socket cuts: the key never comes out', async (t) => {
  const stream = fc.array(message, { minLength: 1, maxLength: 5 })
  const socketCuts = fc.array(fc.nat(), { maxLength: 12 })
  await fc.assert(fc.asyncProperty(stream, fc.boolean(), socketCuts, async (messages, masked, socketCuts) => {
    const mask = masked ? Buffer.from([0xa1, 0x00, 0x5c, 0xff]) : undefined
    const frames: Buffer[] = []
    let pings = 0
    for (const m of messages) {
      const payload = Buffer.from(m.before + (m.keyed ? SECRET : '') + m.after)
      const pieces = cut(payload, m.cuts)
      pieces.forEach((piece, i) => {
        frames.push(wire(i === pieces.length - 1, i === 0 ? (m.binary ? 2 : 1) : 0, piece, mask))
        if (m.pings && i < pieces.length - 1) frames.push(wire(true, 9, Buffer.from(`p${pings++}`), mask))
      })
    }
    const bytes = Buffer.concat(frames)
    const keyed = messages.some((m) => m.keyed)
    const rewritten = await through(true, cut(bytes, socketCuts))
    const got = read(rewritten.out)
    const expected = messages.map((m) => ({
      opcode: m.binary ? 2 : 1, text: Buffer.from(m.before + (m.keyed ? 'sidekey' : '') + m.after).toString('latin1'),
    }))
    t.same(got.messages, expected)
    t.equal(rewritten.found, keyed ? 1 : 0)
    const sent = Array.from({ length: pings }, (_, i) => ({ opcode: 9, text: `p${i}` }))
    t.same(got.controls, sent, 'pings pass, in order')
    const watched = await through(false, cut(bytes, socketCuts))
    t.ok(watched.out.equals(bytes), 'report only: the bytes pass as they came')
    t.equal(watched.found, keyed ? 1 : 0)
  }), { numRuns: 150 })
})

t.test('7-, 16- and 64-bit lengths at their edges, fed in 7-byte pieces', async (t) => {
  for (const size of [125, 126, 65535, 65536, 70_000]) {
    const payload = Buffer.concat([Buffer.alloc(size - SECRET.length, 'q'), Buffer.from(SECRET)])
    const bytes = wire(true, 2, payload, Buffer.from([1, 2, 3, 4]))
    const pieces: Buffer[] = []
    for (let i = 0; i < bytes.length; i += 7) pieces.push(bytes.subarray(i, i + 7))
    const { out, found } = await through(true, pieces)
    t.same(read(out).messages, [{ opcode: 2, text: 'q'.repeat(size - SECRET.length) + 'sidekey' }], `${size} bytes`)
    t.equal(found, 1)
  }
})

t.test('a close reason quoting the key is scrubbed; a longer placeholder keeps the close code', async (t) => {
  const close = Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from(`bad key ${SECRET}`)])
  const { out, found } = await through(true, [wire(true, 8, close)])
  t.same(read(out).controls, [{ opcode: 8, text: '\u000f\u00a0bad key sidekey' }])
  t.equal(found, 1)
  const long = new Scrubber(tokenNeedles(SECRET, 'p'.repeat(200)))
  const stream = messageScrub(long, true, () => {})
  const chunks: Buffer[] = []
  stream.on('data', (c: Buffer) => chunks.push(c))
  stream.end(wire(true, 8, close))
  await new Promise((resolve) => stream.once('end', resolve))
  t.same(read(Buffer.concat(chunks)).controls, [{ opcode: 8, text: '\u000f\u00a0' }], 'cut to its code (<= 125 bytes)')
})

t.test('frames no peer may send fail the stream', async (t) => {
  const A = Buffer.from('a')
  const cases: Array<[string, Buffer]> = [
    ['reserved bit (compressed: no extension was negotiated)', wire(true, 1, Buffer.from('x'), undefined, 0x40)],
    ['reserved opcode', wire(true, 3, Buffer.from('x'))],
    ['fragmented ping', wire(false, 9, Buffer.from('x'))],
    ['oversized ping', wire(true, 9, Buffer.alloc(126))],
    ['continuation without a message', wire(true, 0, Buffer.from('x'))],
    ['a message inside an unfinished one', Buffer.concat([wire(false, 1, A), wire(true, 2, A)])],
    ['a 64-bit length past 2^53', Buffer.from([0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 1])],
  ]
  for (const [name, bytes] of cases) {
    for (const rewrite of [true, false]) {
      const { error } = await through(rewrite, [bytes])
      t.type(error, WsProtocolError, `${name} (${rewrite ? 'rewrite' : 'report only'})`)
    }
  }
})
