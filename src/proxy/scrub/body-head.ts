import type { BodySink, BodySource } from '../upstream/upstream.js'

/** The start of a body, read before the answer's head is written, and the whole body to relay after it. */
export interface BodyHead {
  /** What arrived first: at least the bytes asked for, unless the body is shorter. */
  readonly bytes: Buffer
  /** The body ended within `bytes`. */
  readonly complete: boolean
  /** The whole body again (`bytes`, then the rest as it comes), for one reader. */
  readonly body: BodySource
}

/**
 * Reads `source` until `want` bytes have come or it ended, pausing it there: a small body can then be scrubbed whole
 * (and keep a Content-Length), and a body's first bytes be looked at before the agent is answered. Rejects when the
 * body fails first; a later failure goes to the reader of `body`.
 */
export function readHead (source: BodySource, want: number): Promise<BodyHead> {
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = []
    let size = 0
    let ended = false
    let failed: Error | undefined
    let settled = false
    let reader: BodySink | undefined
    const settle = (): void => {
      settled = true
      resolve({ bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), complete: ended, body })
    }
    const body: BodySource = {
      attach: (sink) => {
        reader = sink
        const held = chunks
        chunks = []
        let flowing = true
        for (const chunk of held) flowing = sink.data(chunk)
        if (failed !== undefined) sink.error(failed)
        else if (ended) sink.end()
        else if (flowing) source.resume()
      },
      resume: () => { source.resume() },
      cancel: (reason) => { source.cancel(reason) },
    }
    source.attach({
      data: (chunk) => {
        if (reader !== undefined) return reader.data(chunk)
        chunks.push(chunk)
        size += chunk.length
        if (size < want) return true
        if (!settled) settle()
        return false
      },
      end: () => {
        ended = true
        if (reader !== undefined) reader.end()
        else if (!settled) settle()
      },
      error: (err) => {
        if (reader !== undefined) reader.error(err)
        else if (settled) failed = err
        else {
          settled = true
          reject(err)
        }
      },
    })
  })
}
