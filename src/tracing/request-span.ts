import type { AuditEvent } from '../audit/events.js'
import type { Span } from './index.js'

/** What a request's audit event says, as the attributes of its span: never a query string or a header value. */
interface Described {
  tool?: string
  method?: string
  host?: string
  path?: string
  status?: number
  credential_id?: string | null
  outcome?: string
  reason?: string
  error?: string
  request_id?: string
  trace_id?: string
}

/** Ends a request's span with its audit event's facts, and gives the event the span's `trace_id`. */
export function endSpan (span: Span, event: AuditEvent, task: string | undefined): void {
  const e = event as Described
  if (e.tool !== undefined) span.set('sidekey.tool', e.tool)
  if (e.method !== undefined) span.set('http.request.method', e.method)
  if (e.host !== undefined) span.set('server.address', e.host)
  if (e.path !== undefined) span.set('url.path', e.path)
  if (e.status !== undefined) span.set('http.response.status_code', e.status)
  if (typeof e.credential_id === 'string') span.set('sidekey.credential_id', e.credential_id)
  if (e.request_id !== undefined) span.set('sidekey.request_id', e.request_id)
  if (task !== undefined) span.set('sidekey.task', task)
  const outcome = e.outcome ?? e.reason
  if (outcome !== undefined) span.set('sidekey.outcome', outcome)
  const failed = e.error !== undefined || (e.status !== undefined && e.status >= 500)
  if (failed) span.fail(e.error ?? outcome ?? `http_${e.status}`)
  span.rename(`${e.method ?? 'request'} ${e.tool ?? e.host ?? ''}`.trimEnd())
  if (span.traceId !== undefined) e.trace_id = span.traceId
  span.end()
}
