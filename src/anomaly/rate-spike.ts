import type { AuditEvent } from '../audit/events.js'
import { MAX_TRACKED_TOOLS, type AnomalyFinding, type Detector } from './detector.js'

export interface RateSpikeOptions {
  /** Bucket length in milliseconds. */
  windowMs: number
  /** Fires when a bucket's count exceeds factor × baseline ... */
  factor: number
  /** ... and reaches minCount. */
  minCount: number
  /** EWMA span in buckets. */
  baselineWindows: number
  /** Buckets after first use before the baseline is trusted. */
  warmupWindows: number
}

interface ToolState { bucket: number, count: number, baseline: number, buckets: number, fired: boolean }

/**
 * Per tool, requests per bucket against an exponentially weighted moving average of past buckets (empty buckets
 * count as zero). Fires at most once per bucket, at the moment the count crosses the bar.
 */
export class RateSpikeDetector implements Detector {
  readonly kind = 'rate_spike' as const
  readonly #opts: RateSpikeOptions
  readonly #alpha: number
  readonly #tools = new Map<string, ToolState>()

  constructor (opts: RateSpikeOptions) {
    this.#opts = opts
    this.#alpha = 2 / (opts.baselineWindows + 1)
  }

  observe (event: AuditEvent, now: number): AnomalyFinding | undefined {
    if (event.event !== 'credential.used') return undefined
    const bucket = Math.floor(now / this.#opts.windowMs)
    let s = this.#tools.get(event.tool)
    if (s === undefined) {
      if (this.#tools.size >= MAX_TRACKED_TOOLS) return undefined
      s = { bucket, count: 0, baseline: 0, buckets: 0, fired: false }
      this.#tools.set(event.tool, s)
    }
    if (bucket > s.bucket) this.#roll(s, bucket)
    s.count++
    if (s.fired || s.buckets < this.#opts.warmupWindows || s.count < this.#opts.minCount) return undefined
    const bar = this.#opts.factor * Math.max(s.baseline, 1)
    if (s.count <= bar) return undefined
    s.fired = true
    const per = Math.round(this.#opts.windowMs / 1000)
    const detail = `${s.count} requests in ${per}s, baseline ${s.baseline.toFixed(1)} per ${per}s`
    return { kind: this.kind, tool: event.tool, detail }
  }

  #roll (s: ToolState, bucket: number): void {
    const a = this.#alpha
    s.baseline = a * s.count + (1 - a) * s.baseline
    const empty = Math.min(bucket - s.bucket - 1, 10_000)
    // Empty buckets in between pull the baseline towards zero: (1 - a)^empty in closed form.
    if (empty > 0) s.baseline *= (1 - a) ** empty
    s.buckets += 1 + empty
    s.bucket = bucket
    s.count = 0
    s.fired = false
  }
}
