import type { Span } from './index.js'

/**
 * Names `span` as the parent in the call's `traceparent` (flat name/value list), in place of the agent's: the
 * upstream's spans then hang under sidekey's. The agent's `tracestate` goes on as it came. No-op with tracing off.
 */
export function withTraceparent (headers: string[], span: Span): void {
  const traceparent = span.traceparent()
  if (traceparent === undefined) return
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (headers[i]!.toLowerCase() === 'traceparent') headers.splice(i, 2)
  }
  headers.push('traceparent', traceparent)
}
