/** Slots a window is cut into: the count frees a slot at a time, so Retry-After is exact to 1/SLOTS of `per`. */
const SLOTS = 30

/**
 * A sliding window counter: what was spent in the last `per` milliseconds, kept as SLOTS + 1 slot counts (a few
 * hundred bytes, whatever the limit). Sliding rather than fixed: a fixed window lets twice the limit through across
 * its edge (all of it at 00:59, all again at 01:00) and then makes the agent wait up to a whole window; here any
 * span of `per` holds at most the limit, and what was spent comes back a slot at a time. A slot is counted until
 * it is wholly older than `per`, so the window errs long (by up to one slot), never short.
 */
export class SlidingWindow {
  readonly limit: number
  readonly #slotMs: number
  readonly #counts = new Float64Array(SLOTS + 1)
  readonly #epochs = new Float64Array(SLOTS + 1).fill(-Infinity)

  constructor (limit: number, perMs: number) {
    this.limit = limit
    this.#slotMs = Math.max(1, perMs / SLOTS)
  }

  /** Spent within the window at `now`. */
  used (now: number): number {
    const oldest = this.#epoch(now) - SLOTS
    let sum = 0
    for (let i = 0; i <= SLOTS; i++) if (this.#epochs[i]! >= oldest) sum += this.#counts[i]!
    return sum
  }

  remaining (now: number): number {
    return Math.max(0, this.limit - this.used(now))
  }

  /** Counts `amount` as spent at `now`. */
  add (amount: number, now: number): void {
    const epoch = this.#epoch(now)
    const i = epoch % (SLOTS + 1)
    if (this.#epochs[i] !== epoch) {
      this.#epochs[i] = epoch
      this.#counts[i] = 0
    }
    this.#counts[i]! += amount
  }

  /** Milliseconds until `amount` more fits, 0 when it fits now (never when `amount` exceeds the limit: Infinity). */
  waitFor (amount: number, now: number): number {
    if (amount > this.limit) return Infinity
    let excess = this.used(now) + amount - this.limit
    if (excess <= 0) return 0
    const current = this.#epoch(now)
    for (let epoch = current - SLOTS; epoch <= current; epoch++) {
      const i = epoch % (SLOTS + 1)
      if (this.#epochs[i] !== epoch) continue
      excess -= this.#counts[i]!
      // This slot leaves the window when the epoch SLOTS + 1 after it begins.
      if (excess <= 0) return (epoch + SLOTS + 1) * this.#slotMs - now
    }
    return (current + SLOTS + 1) * this.#slotMs - now
  }

  #epoch (now: number): number {
    return Math.floor(now / this.#slotMs)
  }
}
