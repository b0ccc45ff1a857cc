import type { AnomalyKind } from '../audit/events.js'
import type { AnomalyFinding } from './detector.js'

export interface RateLimitOptions {
  /** Anomaly lines per kind and tool per window. */
  max: number
  windowMs: number
}

interface Window {
  readonly kind: AnomalyKind, readonly tool: string | null, start: number, count: number, suppressed: number
}

const MAX_KEYS = 10_000

/**
 * Keeps a flood of anomalies from flooding the log: per kind and tool, at most `max` lines per window (a window
 * opens at the first anomaly of its key); the rest are suppressed and, once the window has ended, summarised in
 * one line ("N more ... suppressed"). The counts in sidekey_anomalies_total are not affected.
 *
 * @example
 *   if (limiter.allow(f.kind, f.tool, now)) log(f)
 *   for (const summary of limiter.takeSummaries(now)) log(summary)   // when nextDue() has come
 */
export class AnomalyRateLimiter {
  readonly #opts: RateLimitOptions
  readonly #windows = new Map<string, Window>()

  constructor (opts: RateLimitOptions) { this.#opts = opts }

  get options (): RateLimitOptions { return this.#opts }

  /** True when this anomaly may be logged now; false when it is suppressed (and counted for the summary). */
  allow (kind: AnomalyKind, tool: string | null, now: number): boolean {
    const key = tool === null ? kind : `${kind}\u0000${tool}`
    let w = this.#windows.get(key)
    if (w !== undefined && now - w.start >= this.#opts.windowMs && w.suppressed === 0) {
      w.start = now
      w.count = 0
    }
    if (w === undefined) {
      if (this.#windows.size >= MAX_KEYS) this.#prune(now)
      if (this.#windows.size >= MAX_KEYS) return false
      w = { kind, tool, start: now, count: 0, suppressed: 0 }
      this.#windows.set(key, w)
    }
    // A window that ended with suppressions stays open until its summary is taken, so the summary is never lost.
    if (w.suppressed > 0 || w.count >= this.#opts.max) {
      w.suppressed++
      return false
    }
    w.count++
    return true
  }

  /** When the earliest pending summary is due, or undefined when nothing is suppressed. */
  nextDue (): number | undefined {
    let due: number | undefined
    for (const w of this.#windows.values()) {
      const end = w.start + this.#opts.windowMs
      if (w.suppressed > 0 && (due === undefined || end < due)) due = end
    }
    return due
  }

  /** Summaries of the windows that ended by `now` with suppressions (all of them with `force`), and resets those. */
  takeSummaries (now: number, force = false): AnomalyFinding[] {
    const out: AnomalyFinding[] = []
    for (const [key, w] of this.#windows) {
      const ended = now - w.start >= this.#opts.windowMs
      if (w.suppressed > 0 && (ended || force)) {
        const secs = Math.max(1, Math.round(Math.min(now - w.start, this.#opts.windowMs) / 1000))
        const per = Math.round(this.#opts.windowMs / 1000)
        const detail = `${w.suppressed} more ${w.kind} anomalies suppressed in ${secs}s ` +
          `(rate limit ${this.#opts.max} per ${per}s)`
        out.push({ kind: w.kind, tool: w.tool, suppressed: w.suppressed, detail })
        this.#windows.delete(key)
      } else if (ended) {
        this.#windows.delete(key)
      }
    }
    return out
  }

  #prune (now: number): void {
    for (const [key, w] of this.#windows) {
      if (w.suppressed === 0 && now - w.start >= this.#opts.windowMs) this.#windows.delete(key)
    }
  }
}
