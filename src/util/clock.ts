/** Time as sidekey sees it; tests pass a fake one so refresh schedules run without waiting. */
export interface Clock {
  now (): number
  setTimeout (fn: () => void, ms: number): Timer
  clearTimeout (timer: Timer): void
}

export interface Timer { unref?: () => unknown }

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(ms, 2 ** 31 - 1)),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
}
