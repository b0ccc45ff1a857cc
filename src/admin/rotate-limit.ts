import type { Clock } from '../util/clock.js'

/** Admin rotations of one credential: at most one per this long (a forced refresh after a 401 waits as long). */
export const ADMIN_ROTATE_INTERVAL_MS = 10_000

/**
 * One admin rotation per credential per interval, whoever asks: each one is an issuer call, and a caller holding
 * the admin token (or a script gone wrong) must not turn the issuer into a mint. Keyed by the tools that share one
 * credential, so alternating between them rotates it no faster.
 */
export class RotateLimiter {
  readonly #last = new Map<string, number>()
  readonly #clock: Clock
  readonly #intervalMs: number

  constructor (clock: Clock, intervalMs = ADMIN_ROTATE_INTERVAL_MS) {
    this.#clock = clock
    this.#intervalMs = intervalMs
  }

  /** Takes the slot of `tools` now and returns 0, or returns the whole seconds to wait (at least 1). */
  take (tools: readonly string[]): number {
    const now = this.#clock.now()
    const last = Math.max(...tools.map((t) => this.#last.get(t) ?? -Infinity))
    const wait = last + this.#intervalMs - now
    if (wait > 0) return Math.max(1, Math.ceil(wait / 1000))
    for (const t of tools) this.#last.set(t, now)
    // Bounded by the tools ever configured; entries older than the interval say nothing any more.
    if (this.#last.size > 1024) for (const [k, at] of this.#last) if (now - at >= this.#intervalMs) this.#last.delete(k)
    return 0
  }
}
