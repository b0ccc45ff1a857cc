/**
 * Per-key log rate limit for events an agent can repeat at will (a refused handshake per connection): at most `max`
 * lines per key per window. What is held back is still counted in the metrics by the caller, and the next line
 * let through says how many were held back (`suppressed`).
 *
 * @example
 *   const held = limiter.take(`tls.client_error ${host}`, now)
 *   if (held !== undefined) log({ ...event, ...(held > 0 ? { suppressed: held } : {}) })
 */
export class LineLimiter {
  readonly #max: number
  readonly #windowMs: number
  readonly #windows = new Map<string, { start: number, count: number, suppressed: number }>()

  constructor (max = 10, windowMs = 60_000) {
    this.#max = max
    this.#windowMs = windowMs
  }

  /** undefined: hold this line back; a number: write it, noting this many lines held back before it. */
  take (key: string, now: number): number | undefined {
    let w = this.#windows.get(key)
    if (w === undefined || now - w.start >= this.#windowMs) {
      const suppressed = w?.suppressed ?? 0
      // Bounded: keys come from agent-chosen hosts; a full map drops windows that are over (or all, at worst).
      if (w === undefined && this.#windows.size >= MAX_KEYS) this.#prune(now)
      w = { start: now, count: 0, suppressed }
      this.#windows.set(key, w)
    }
    if (w.count >= this.#max) {
      w.suppressed++
      return undefined
    }
    w.count++
    const held = w.suppressed
    w.suppressed = 0
    return held
  }

  #prune (now: number): void {
    for (const [key, w] of this.#windows) if (now - w.start >= this.#windowMs) this.#windows.delete(key)
    if (this.#windows.size >= MAX_KEYS) this.#windows.clear()
  }
}

const MAX_KEYS = 10_000
