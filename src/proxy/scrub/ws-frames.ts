/**
 * RFC 6455 §5.2 framing, read incrementally: a frame's header is parsed once all of it has arrived, its payload is
 * handed on in the pieces the socket delivers (unmasked), so no frame is ever held whole and a 64-bit length costs
 * no memory. Control frames may arrive between the fragments of a message; the reader does not care, its caller
 * keeps the message state.
 */

export const OP_CONTINUATION = 0x0
export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8
export const OP_PING = 0x9
export const OP_PONG = 0xa

/** Control frames carry at most this many payload bytes and are never fragmented (§5.5). */
export const CONTROL_MAX = 125

export interface FrameHead {
  readonly fin: boolean
  readonly opcode: number
  readonly length: number
}

/** What the reader finds, in stream order. */
export interface FrameSink {
  /** A frame's header; its payload follows in `payload` calls, the last one with `last` (also for an empty frame). */
  head (frame: FrameHead): void
  payload (frame: FrameHead, piece: Buffer, last: boolean): void
}

/** A frame no endpoint may send (or one using an extension that was not negotiated): the connection is failed. */
export class WsProtocolError extends Error {
  override readonly name = 'WsProtocolError'
}

const MAX_HEADER = 14

export class FrameReader {
  #header: Buffer = Buffer.alloc(0)
  #frame: FrameHead | undefined
  #mask: Buffer | undefined
  #left = 0
  /** Payload bytes already read of the current frame: where the mask cycle stands. */
  #read = 0

  push (chunk: Buffer, sink: FrameSink): void {
    let pos = 0
    while (pos < chunk.length || (this.#frame !== undefined && this.#left === 0)) {
      if (this.#frame === undefined) {
        const taken = this.#readHeader(chunk, pos, sink)
        if (taken < 0) return
        pos = taken
        continue
      }
      const n = Math.min(this.#left, chunk.length - pos)
      const piece = this.#unmask(chunk.subarray(pos, pos + n))
      pos += n
      this.#left -= n
      const frame = this.#frame
      if (this.#left === 0) this.#frame = undefined
      sink.payload(frame, piece, this.#left === 0)
    }
  }

  /** Parses a header from what was held plus `chunk` at `pos`; returns where its payload starts, -1 if incomplete. */
  #readHeader (chunk: Buffer, pos: number, sink: FrameSink): number {
    const held = this.#header.length
    const buf = held === 0 ? chunk.subarray(pos) : Buffer.concat([this.#header, chunk.subarray(pos, pos + MAX_HEADER)])
    const size = headerSize(buf)
    if (size < 0 || buf.length < size) {
      this.#header = Buffer.from(buf.subarray(0, MAX_HEADER))
      return -1
    }
    const b0 = buf[0]!
    const b1 = buf[1]!
    const opcode = b0 & 0x0f
    const fin = (b0 & 0x80) !== 0
    if ((b0 & 0x70) !== 0) throw new WsProtocolError('reserved bits set: no extension was negotiated')
    if ((opcode > OP_BINARY && opcode < OP_CLOSE) || opcode > OP_PONG) {
      throw new WsProtocolError('reserved opcode')
    }
    let length = b1 & 0x7f
    if (length === 126) length = buf.readUInt16BE(2)
    else if (length === 127) {
      const long = buf.readBigUInt64BE(2)
      if (long > BigInt(Number.MAX_SAFE_INTEGER)) throw new WsProtocolError('frame length out of range')
      length = Number(long)
    }
    if (opcode >= OP_CLOSE && (!fin || length > CONTROL_MAX)) {
      throw new WsProtocolError('fragmented or oversized control frame')
    }
    this.#mask = (b1 & 0x80) === 0 ? undefined : Buffer.from(buf.subarray(size - 4, size))
    this.#header = Buffer.alloc(0)
    this.#frame = { fin, opcode, length }
    this.#left = length
    this.#read = 0
    sink.head(this.#frame)
    return pos + size - held
  }

  #unmask (piece: Buffer): Buffer {
    const mask = this.#mask
    if (mask === undefined) return piece
    const out = Buffer.allocUnsafe(piece.length)
    const from = this.#read
    for (let i = 0; i < piece.length; i++) out[i] = piece[i]! ^ mask[(from + i) & 3]!
    this.#read += piece.length
    return out
  }
}

/** Bytes of the header starting `buf`, or -1 when not even its length bytes have arrived. */
function headerSize (buf: Buffer): number {
  if (buf.length < 2) return -1
  const len = buf[1]! & 0x7f
  const mask = (buf[1]! & 0x80) === 0 ? 0 : 4
  return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + mask
}

/** One unmasked frame (what a server sends, §5.1). */
export function encodeFrame (fin: boolean, opcode: number, payload: Buffer): Buffer {
  const len = payload.length
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8
  const head = Buffer.allocUnsafe(2 + ext)
  head[0] = (fin ? 0x80 : 0) | opcode
  head[1] = len < 126 ? len : ext === 2 ? 126 : 127
  if (ext === 2) head.writeUInt16BE(len, 2)
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2)
  return Buffer.concat([head, payload])
}
