import type { Clock, Timer } from '../../src/util/clock.js'

class FakeTimer implements Timer {
  unref (): this { return this }
}

interface Pending { readonly at: number, readonly seq: number, readonly fn: () => void }

/** Lets every promise chain started by a timer (or a test) run to completion before time moves on. */
export async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/**
 * A Clock whose time only moves when a test says so. `advance` runs the timers that fall due in time order,
 * setting `now()` to each timer's due time and letting promise chains settle between them.
 *
 * @example
 *   const clock = new FakeClock()
 *   clock.setTimeout(() => fired.push(clock.now()), 1000)
 *   await clock.advance(1000)
 */
export class FakeClock implements Clock {
  #now: number
  #seq = 0
  readonly #timers = new Map<Timer, Pending>()

  constructor (start = Date.parse('2026-01-01T00:00:00.000Z')) {
    this.#now = start
  }

  now (): number { return this.#now }

  setTimeout (fn: () => void, ms: number): Timer {
    const timer = new FakeTimer()
    this.#timers.set(timer, { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn })
    return timer
  }

  clearTimeout (timer: Timer): void {
    this.#timers.delete(timer)
  }

  /** How many timers are armed. */
  get pending (): number { return this.#timers.size }

  /** When the earliest armed timer falls due, or undefined. */
  nextAt (): number | undefined {
    return this.#earliest()?.at
  }

  /** Moves time forward by `ms`, running due timers in order (bounded: at most 100 000 of them). */
  async advance (ms: number): Promise<void> {
    const target = this.#now + ms
    for (let i = 0; i < 100_000; i++) {
      await settle()
      const next = this.#earliest()
      if (next === undefined || next.at > target) break
      this.#timers.delete(next.timer)
      this.#now = Math.max(this.#now, next.at)
      next.fn()
    }
    this.#now = Math.max(this.#now, target)
    await settle()
  }

  /** Moves time to the absolute instant `at` (never backwards). */
  async advanceTo (at: number): Promise<void> {
    await this.advance(Math.max(0, at - this.#now))
  }

  #earliest (): (Pending & { timer: Timer }) | undefined {
    let best: (Pending & { timer: Timer }) | undefined
    for (const [timer, p] of this.#timers) {
      if (best === undefined || p.at < best.at || (p.at === best.at && p.seq < best.seq)) best = { ...p, timer }
    }
    return best
  }
}
