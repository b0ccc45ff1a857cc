import type { AuditEvent } from '../audit/events.js'
import { MAX_TRACKED_TOOLS, type AnomalyFinding, type Detector } from './detector.js'

export interface AuthFailuresOptions {
  /** This many 401/403 answers ... */
  threshold: number
  /** ... within this many milliseconds. */
  windowMs: number
}

/**
 * A burst of 401/403 from one tool's upstream: a revoked or under-scoped credential, or an agent hammering an
 * endpoint it may not use. Refusals by sidekey itself (events with an `outcome`) do not count. After firing, the
 * count starts again, so a steady flood fires once per `threshold` failures (and the hub's rate limit applies).
 */
export class AuthFailuresDetector implements Detector {
  readonly kind = 'auth_failures' as const
  readonly #opts: AuthFailuresOptions
  /** Per tool, a ring of the last `threshold` failure times. */
  readonly #tools = new Map<string, { times: Float64Array, next: number, size: number }>()

  constructor (opts: AuthFailuresOptions) { this.#opts = opts }

  observe (event: AuditEvent, now: number): AnomalyFinding | undefined {
    if (event.event !== 'credential.used' || event.outcome !== undefined) return undefined
    if (event.status !== 401 && event.status !== 403) return undefined
    let ring = this.#tools.get(event.tool)
    if (ring === undefined) {
      if (this.#tools.size >= MAX_TRACKED_TOOLS) return undefined
      ring = { times: new Float64Array(this.#opts.threshold), next: 0, size: 0 }
      this.#tools.set(event.tool, ring)
    }
    const n = this.#opts.threshold
    ring.times[ring.next] = now
    ring.next = (ring.next + 1) % n
    if (ring.size < n) ring.size++
    if (ring.size < n) return undefined
    // The ring is full: its oldest entry is at `next`.
    const oldest = ring.times[ring.next]!
    if (now - oldest > this.#opts.windowMs) return undefined
    ring.size = 0
    const secs = Math.max(1, Math.round((now - oldest) / 1000))
    const detail = `${n} responses with status 401/403 from the upstream within ${secs}s (last: ${event.status})`
    return { kind: this.kind, tool: event.tool, detail }
  }
}
