import type { BodyScan } from './scrub.js'

/** How much of a body sidekey looks at for a tool whose bodies are not scrubbed (`scrub_body: false`). */
export const WATCHED_BYTES = 64 * 1024

/**
 * A tool that opted out of body scrubbing still learns when its upstream echoes the credential: the first
 * {@link WATCHED_BYTES} of each body are searched (a body scan whose output is dropped) and the body is relayed
 * unchanged. A hit marks the answer `echoed` (audit, `credential_echoed` anomaly) though the agent read it.
 */
export class EchoWatch implements BodyScan {
  readonly #scan: BodyScan
  #left: number

  constructor (scan: BodyScan, bytes = WATCHED_BYTES) {
    this.#scan = scan
    this.#left = bytes
  }

  get echoed (): boolean {
    return this.#scan.echoed
  }

  push (chunk: Buffer): Buffer {
    if (this.#left <= 0) return chunk
    const seen = chunk.length <= this.#left ? chunk : chunk.subarray(0, this.#left)
    this.#left -= seen.length
    this.#scan.push(seen)
    if (this.#left === 0) this.#scan.end()
    return chunk
  }

  end (): Buffer {
    if (this.#left > 0) this.#scan.end()
    this.#left = 0
    return EMPTY
  }
}

const EMPTY = Buffer.alloc(0)
