import type { IncomingHttpHeaders } from 'node:http'
import type { TracingConfig } from '../config/schema.js'

/** An attribute value a span may carry: never a credential, a header value or a query string. */
export type SpanValue = string | number | boolean

/**
 * One timed stage of a request or a refresh. With tracing off every span is NO_SPAN, whose methods do nothing, so
 * the request path pays a few empty calls and allocates nothing.
 */
export interface Span {
  /** 32 hex digits when the span is recorded (the audit line's `trace_id`); undefined otherwise. */
  readonly traceId: string | undefined
  /** A span under this one, started now. */
  child: (name: string, client?: boolean) => Span
  set: (key: string, value: SpanValue) => void
  rename: (name: string) => void
  /** Marks the span failed with a stable code (an error code, never a message). */
  fail: (code: string) => void
  end: () => void
  /** The W3C `traceparent` naming this span as the parent, for the call this span makes upstream. */
  traceparent: () => string | undefined
}

export interface Tracing {
  /**
   * The span of one proxied request, continuing the agent's `traceparent` (and `tracestate`) when it sent one;
   * otherwise a new trace, sampled at `tracing.ratio`.
   */
  request: (headers: IncomingHttpHeaders) => Span
  /** A span with no parent (a credential refresh). */
  root: (name: string) => Span
  /**
   * The span an upstream connection opened now belongs to: set just before a dispatch and cleared right after it,
   * as the connection pool dials inside that call.
   */
  dialing: (span: Span | undefined) => void
  /** Exports what is queued and stops. */
  close: () => Promise<void>
}

function nothing (): void {}

export const NO_SPAN: Span = {
  traceId: undefined,
  child: () => NO_SPAN,
  set: nothing,
  rename: nothing,
  fail: nothing,
  end: nothing,
  traceparent: () => undefined,
}

export const NO_TRACING: Tracing = {
  request: () => NO_SPAN,
  root: () => NO_SPAN,
  dialing: nothing,
  close: async () => {},
}

/** The OpenTelemetry exporter, loaded only when `tracing:` is set: without it no @opentelemetry module is read. */
export async function createTracing (
  config: TracingConfig | undefined, instanceId: string, version: string
): Promise<Tracing> {
  if (config === undefined) return NO_TRACING
  const { OtelTracing } = await import('./otel.js')
  return new OtelTracing(config, instanceId, version)
}
