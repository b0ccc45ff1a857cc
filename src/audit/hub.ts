import type { Logger } from 'pino'
import type { AuditEvent, AuditSink } from './events.js'
import type { AnomalyFinding, Detector } from '../anomaly/detector.js'
import { AnomalyRateLimiter, type RateLimitOptions } from '../anomaly/rate-limit.js'
import { auditPath, infoLineWriter } from './log.js'
import { LineLimiter } from './line-limit.js'
import { systemClock, type Clock, type Timer } from '../util/clock.js'

/** What the hub needs of SidekeyMetrics. */
export interface AuditMetrics {
  observe (event: AuditEvent): void
  dropped (count?: number): void
  error (): void
}

export interface AuditHubOptions {
  logger: Logger
  metrics: AuditMetrics
  /** Config `instance_id`, on every line. */
  instanceId: string
  /** Enabled detectors (see anomaly/index.ts createDetectors); none disables anomaly detection. */
  detectors?: readonly Detector[]
  /** Anomaly log lines per kind and tool per window (default 10 per minute). */
  rateLimit?: RateLimitOptions
  clock?: Clock
  /** Events waiting for the detectors; past this they are dropped and counted (default 10,000). */
  maxQueue?: number
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = Object.freeze({ max: 10, windowMs: 60_000 })
const DEFAULT_MAX_QUEUE = 10_000

/**
 * Where every audit event goes: one JSON line on the log (with `event`, `time`, `instance_id`), the metrics, and
 * — batched on a later tick, off the request's critical path — the anomaly detectors. Anomalies they find come
 * back as `anomaly` events: counted always, logged within the rate limit.
 * `emit` never throws and never waits; after `close()` it still logs and counts, without detection.
 *
 * @example
 *   const hub = new AuditHub({ logger, metrics, instanceId: config.instance_id, detectors:
 * createDetectors(config.anomaly) })   hub.emit({ event: 'credential.used', tool: 'github', ... })
 *   hub.close()
 */
export class AuditHub implements AuditSink {
  readonly #log: Logger
  /** The request path's lines, written without pino's per-field serialiser (log.ts); pino's `info` without it. */
  readonly #info: (fields: object) => boolean
  readonly #metrics: AuditMetrics
  readonly #clock: Clock
  readonly #maxQueue: number
  #detectors: readonly Detector[]
  #limiter: AnomalyRateLimiter
  #queue: AuditEvent[] = []
  #times: number[] = []
  #scheduled: NodeJS.Immediate | undefined
  #summaryTimer: Timer | undefined
  #idle: Array<() => void> = []
  #closed = false

  constructor (opts: AuditHubOptions) {
    this.#log = opts.logger.child({ instance_id: opts.instanceId })
    this.#info = infoLineWriter(this.#log) ?? (() => false)
    this.#metrics = opts.metrics
    this.#clock = opts.clock ?? systemClock
    this.#maxQueue = opts.maxQueue ?? DEFAULT_MAX_QUEUE
    this.#detectors = opts.detectors ?? []
    this.#limiter = new AnomalyRateLimiter(opts.rateLimit ?? DEFAULT_RATE_LIMIT)
  }

  /** Lines of events an agent can repeat per connection (see noisyKey), limited per host. */
  readonly #lines = new LineLimiter()

  emit (event: AuditEvent): void {
    try {
      if (event.event === 'anomaly') {
        this.#anomaly(event, this.#clock.now())
        return
      }
      this.#metrics.observe(event)
      const key = noisyKey(event)
      const held = key === undefined ? 0 : this.#lines.take(key, this.#clock.now())
      if (held === undefined) return
      this.#write(held > 0 ? { ...event, suppressed: held } : event)
      if (this.#closed || this.#detectors.length === 0) return
      if (event.event !== 'credential.used' && event.event !== 'egress.denied' && event.event !== 'credential.echoed') {
        return
      }
      if (this.#queue.length >= this.#maxQueue) {
        this.#metrics.dropped(1)
        return
      }
      this.#queue.push(event)
      this.#times.push(this.#clock.now())
      this.#scheduled ??= setImmediate(this.#drain)
    } catch {
      this.#countError()
    }
  }

  /** Swaps the detectors (and rate limit) on reload; learned state starts afresh with the new detectors. */
  setDetectors (detectors: readonly Detector[], rateLimit?: RateLimitOptions): void {
    this.#detectors = detectors
    if (rateLimit !== undefined) {
      this.#flushSummaries(true)
      this.#limiter = new AnomalyRateLimiter(rateLimit)
    }
  }

  /** Resolves once the events emitted so far have been through the detectors. */
  settled (): Promise<void> {
    if (this.#scheduled === undefined) return Promise.resolve()
    return new Promise((resolve) => { this.#idle.push(resolve) })
  }

  /**
   * Runs the queued events through the detectors, logs pending suppression summaries and stops the timers.
   * Later `emit` calls still log and count. Flushing the logger is the caller's.
   */
  close (): void {
    if (this.#closed) return
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled)
    this.#drain()
    this.#closed = true
    if (this.#summaryTimer !== undefined) this.#clock.clearTimeout(this.#summaryTimer)
    this.#summaryTimer = undefined
    this.#flushSummaries(true)
  }

  readonly #drain = (): void => {
    this.#scheduled = undefined
    const queue = this.#queue
    const times = this.#times
    this.#queue = []
    this.#times = []
    const detectors = this.#detectors
    for (let i = 0; i < queue.length; i++) {
      const event = queue[i]!
      const now = times[i]!
      for (const d of detectors) {
        let finding: AnomalyFinding | undefined
        try {
          finding = d.observe(event, now)
        } catch {
          this.#countError()
          continue
        }
        if (finding !== undefined) {
          this.#anomaly({ event: 'anomaly', kind: finding.kind, tool: finding.tool, detail: finding.detail }, now)
        }
      }
    }
    const idle = this.#idle
    this.#idle = []
    for (const resolve of idle) resolve()
  }

  #anomaly (event: AuditEvent & { event: 'anomaly' }, now: number): void {
    try {
      this.#metrics.observe(event)
      if (this.#limiter.allow(event.kind, event.tool, now)) {
        this.#log.warn(event)
      } else {
        this.#scheduleSummaries()
      }
    } catch {
      this.#countError()
    }
  }

  #scheduleSummaries (): void {
    if (this.#summaryTimer !== undefined || this.#closed) return
    const due = this.#limiter.nextDue()
    if (due === undefined) return
    const timer = this.#clock.setTimeout(() => {
      this.#summaryTimer = undefined
      this.#flushSummaries(false)
      this.#scheduleSummaries()
    }, Math.max(0, due - this.#clock.now()))
    timer.unref?.()
    this.#summaryTimer = timer
  }

  #flushSummaries (force: boolean): void {
    try {
      for (const s of this.#limiter.takeSummaries(this.#clock.now(), force)) {
        this.#log.warn({ event: 'anomaly', kind: s.kind, tool: s.tool, detail: s.detail, suppressed: s.suppressed })
      }
    } catch {
      this.#countError()
    }
  }

  #write (event: AuditEvent & { suppressed?: number }): void {
    switch (event.event) {
      case 'credential.used':
      case 'credential.echoed':
      case 'egress.denied':
      case 'egress.passed': {
        // The path never carries its query (README, "Audit events") nor a credential-shaped segment (threat model:
        // a log reader).
        const path = event.path === undefined ? undefined : auditPath(event.path)
        const line = path === event.path ? event : { ...event, path }
        if (!this.#info(line)) this.#log.info(line)
        return
      }
      case 'credential.refresh_failed':
        this.#log.warn(event)
        return
      default:
        this.#log.info(event)
    }
  }

  #countError (): void {
    try { this.#metrics.error() } catch { /* nothing left to tell */ }
  }
}

/**
 * Events one caller can repeat at will, and that say the same thing each time: a failed client handshake, a CONNECT
 * to a host the CA cannot cover, a refused admin write (a token guesser on the admin port). Their lines are
 * rate-limited per host and alert, or per admin route and reason; the metrics count every one.
 */
function noisyKey (event: AuditEvent): string | undefined {
  if (event.event === 'tls.client_error') return `${event.event} ${event.host} ${event.alert}`
  if (event.event === 'egress.denied' && event.reason === 'ca_constraint') return `${event.event} ${event.host}`
  if (event.event === 'admin.denied') return `${event.event} ${event.route} ${event.reason}`
  return undefined
}
