import { Transform, type TransformCallback } from 'node:stream'
import type { BodyScrubber, Scrubber } from './scrub.js'
import {
  CONTROL_MAX, encodeFrame, FrameReader, OP_CLOSE, OP_CONTINUATION, type FrameHead, type FrameSink, WsProtocolError,
} from './ws-frames.js'

/**
 * One direction of a WebSocket after its 101, searched for the credential injected at the handshake: every text
 * and binary message (fragments searched as one stream, so a secret split across fragments is found) and every
 * control frame's payload (a close reason can quote a key).
 *
 * `rewrite` (upstream → agent on a `scrub_body` tool): each spelling is replaced by the placeholder and the message
 * re-framed as it streams. A message is never held whole: each piece read is sent as a fragment of its own length,
 * minus the scrubber's window (the longest spelling less one byte) held back for the next piece, which RFC 6455
 * §5.4 lets an intermediary do. An ordinary message's bytes arrive unchanged, possibly in other fragments.
 * Otherwise (the agent's messages; an upstream's on a tool without `scrub_body`) the bytes pass untouched and the
 * search only reports: after the first find, nothing more is parsed.
 *
 * `found` is called at most once per direction. A frame no peer may send (reserved bits: no extension was
 * negotiated; reserved opcodes; a broken fragment sequence) fails the stream with a {@link WsProtocolError}.
 */
export function messageScrub (scrubber: Scrubber, rewrite: boolean, found: () => void): Transform {
  const scan = new MessageScan(scrubber, rewrite, found)
  return new Transform({
    transform (chunk: Buffer, _enc, done: TransformCallback) {
      if (scan.finished) { done(null, chunk); return }
      try {
        scan.push(chunk)
      } catch (err) {
        done(err as Error)
        return
      }
      if (!rewrite) { done(null, chunk); return }
      const out = scan.take()
      done(null, out.length === 0 ? undefined : out)
    },
  })
}

class MessageScan implements FrameSink {
  readonly #reader = new FrameReader()
  readonly #scrubber: Scrubber
  readonly #rewrite: boolean
  readonly #found: () => void
  /** Set once the watch-only search has found the credential: the rest passes unparsed. */
  finished = false
  #reported = false
  /** The data message being read (between its first and last fragment). */
  #message: { opcode: number, scrub: BodyScrubber, sent: boolean } | undefined
  #control: Buffer[] = []
  #out: Buffer[] = []

  constructor (scrubber: Scrubber, rewrite: boolean, found: () => void) {
    this.#scrubber = scrubber
    this.#rewrite = rewrite
    this.#found = found
  }

  push (chunk: Buffer): void {
    this.#reader.push(chunk, this)
  }

  /** The frames to send for what was pushed so far. */
  take (): Buffer {
    const out = this.#out
    this.#out = []
    return out.length === 1 ? out[0]! : Buffer.concat(out)
  }

  head (frame: FrameHead): void {
    if (frame.opcode >= OP_CLOSE) {
      this.#control = []
      return
    }
    if ((frame.opcode === OP_CONTINUATION) !== (this.#message !== undefined)) {
      throw new WsProtocolError(frame.opcode === OP_CONTINUATION ? 'continuation, no message' : 'unfinished message')
    }
    this.#message ??= { opcode: frame.opcode, scrub: this.#scrubber.body(), sent: false }
  }

  payload (frame: FrameHead, piece: Buffer, last: boolean): void {
    if (frame.opcode >= OP_CLOSE) {
      this.#control.push(piece)
      if (last) this.#controlFrame(frame.opcode, Buffer.concat(this.#control))
      return
    }
    const message = this.#message!
    const end = last && frame.fin
    let out = message.scrub.push(piece)
    if (end) {
      this.#message = undefined
      const rest = message.scrub.end()
      out = out.length === 0 ? rest : Buffer.concat([out, rest])
    }
    if (message.scrub.echoed) this.#report()
    if (!this.#rewrite || (out.length === 0 && !end)) return
    this.#out.push(encodeFrame(end, message.sent ? OP_CONTINUATION : message.opcode, out))
    message.sent = true
  }

  #controlFrame (opcode: number, payload: Buffer): void {
    const scrub = this.#scrubber.body()
    let out = scrub.push(payload)
    out = Buffer.concat([out, scrub.end()])
    if (scrub.echoed) this.#report()
    if (!this.#rewrite) return
    // A placeholder longer than the secret could push a control frame past its limit: a close keeps its code.
    if (out.length > CONTROL_MAX) out = out.subarray(0, opcode === OP_CLOSE ? 2 : CONTROL_MAX)
    this.#out.push(encodeFrame(true, opcode, out))
  }

  #report (): void {
    if (this.#reported) return
    this.#reported = true
    if (!this.#rewrite) this.finished = true
    this.#found()
  }
}
