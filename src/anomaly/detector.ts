import type { AnomalyKind, AuditEvent } from '../audit/events.js'

/**
 * What a detector reports; the hub turns it into an `anomaly` event. `detail` never holds a secret, a query or a
 * header value.
 */
export interface AnomalyFinding {
  readonly kind: AnomalyKind
  readonly tool: string | null
  readonly detail: string
  /** For a rate-limit summary: how many anomalies of this kind and tool it stands for. */
  readonly suppressed?: number
}

/**
 * One anomaly kind. `observe` sees every audit event the hub feeds it (off the request's critical path), in order,
 * with the time it was emitted; it keeps only bounded state and never throws.
 *
 * @example
 *   const finding = detector.observe(event, Date.now())
 *   if (finding !== undefined) hub.emit({ event: 'anomaly', ...finding })
 */
export interface Detector {
  readonly kind: AnomalyKind
  observe (event: AuditEvent, now: number): AnomalyFinding | undefined
}

/** Tools tracked per stateful detector: tool names come from config, this only guards against a bug upstream. */
export const MAX_TRACKED_TOOLS = 1000
