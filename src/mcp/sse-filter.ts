import type { ByteFilter } from './response.js'

const LF = 0x0a
const CR = 0x0d
const EMPTY = Buffer.alloc(0)

/**
 * An SSE stream (`text/event-stream`) rewritten event by event: each event is held only until its blank line, then
 * sent on, unchanged unless `rewrite` returns new `data` for it (then its other fields are kept, its data sent as
 * one line). Progress notifications, sampling and elicitation requests pass as they come. An event past `maxEvent`
 * bytes is sent unread, and so is the rest of the stream (the calls themselves are still judged on the way in).
 */
export class SseFilter implements ByteFilter {
  readonly #rewrite: (data: string) => string | undefined
  readonly #maxEvent: number
  #held: Buffer = EMPTY
  #scanned = 0
  #lineStart = 0
  #lines: Array<readonly [number, number]> = []
  #gaveUp = false

  constructor (rewrite: (data: string) => string | undefined, maxEvent: number) {
    this.#rewrite = rewrite
    this.#maxEvent = maxEvent
  }

  push (chunk: Buffer): Buffer {
    if (this.#gaveUp) return chunk
    // Positions (#scanned, #lineStart, #lines) count from the start of the held event, which starts `buf`.
    const buf = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk])
    const out: Buffer[] = []
    let eventStart = 0
    let i = this.#scanned
    while (i < buf.length) {
      const b = buf[i]!
      if (b !== LF && b !== CR) { i++; continue }
      // A CR at the end of what has come may be the first half of a CRLF: wait for the next byte.
      if (b === CR && i + 1 === buf.length) break
      const next = b === CR && buf[i + 1] === LF ? i + 2 : i + 1
      if (i === this.#lineStart) {
        out.push(this.#event(buf, eventStart, next))
        eventStart = next
        this.#lines = []
      } else this.#lines.push([this.#lineStart, i])
      this.#lineStart = next
      i = next
    }
    this.#held = buf.subarray(eventStart)
    this.#scanned = i - eventStart
    this.#lineStart -= eventStart
    if (eventStart > 0) this.#lines = this.#lines.map(([s, e]) => [s - eventStart, e - eventStart])
    if (this.#held.length > this.#maxEvent) {
      this.#gaveUp = true
      out.push(this.#held)
      this.#held = EMPTY
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out)
  }

  end (): Buffer {
    const rest = this.#held
    this.#held = EMPTY
    return rest
  }

  /** One whole event, `buf` from `start` to `end` (its blank line included), as sent on. */
  #event (buf: Buffer, start: number, end: number): Buffer {
    const raw = buf.subarray(start, end)
    const data: string[] = []
    const others: string[] = []
    for (const [s, e] of this.#lines) {
      const line = buf.subarray(s, e).toString('utf8')
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      if (field === 'data') data.push(colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1)))
      else others.push(line)
    }
    if (data.length === 0) return raw
    const rewritten = this.#rewrite(data.join('\n'))
    if (rewritten === undefined) return raw
    return Buffer.from([...others, `data: ${rewritten}`, '', ''].join('\n'))
  }
}
