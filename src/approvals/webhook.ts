import { Agent } from 'undici'
import type { ApprovalRequested, AuditSink } from '../audit/events.js'
import { createLookup } from '../net/resolver.js'

/** A chat hook answers in well under this; a slow one must not pile up deliveries. */
export const WEBHOOK_TIMEOUT_MS = 5000

/**
 * POSTs an `approval.requested` to the tool's webhook (`approval.webhook`): the operator's own URL, https or http
 * to loopback or a pinned host (config cross-check, as for issuers' token URLs), dialled through the `resolve:`
 * pins, never following a redirect. A failure is audited (`approval.webhook_failed`) and the call keeps waiting.
 */
export async function deliverWebhook (url: string, event: ApprovalRequested, pins: Readonly<Record<string, string>>,
  audit: AuditSink): Promise<void> {
  const lookup = createLookup({ pins, blockPrivate: false })
  const dispatcher = new Agent({ connect: { lookup, timeout: WEBHOOK_TIMEOUT_MS } })
  let error: string | undefined
  try {
    const { origin, pathname, search } = new URL(url)
    const res = await dispatcher.request({
      origin,
      path: pathname + search,
      method: 'POST',
      body: JSON.stringify(event),
      headers: { 'content-type': 'application/json' },
      headersTimeout: WEBHOOK_TIMEOUT_MS,
      bodyTimeout: WEBHOOK_TIMEOUT_MS,
      signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    })
    await res.body.dump()
    if (res.statusCode >= 300) error = res.statusCode < 400 ? 'redirect' : `status_${res.statusCode}`
  } catch (err) {
    const e = err as { code?: string, name?: string }
    error = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' ? 'timeout' : e.code ?? e.name ?? 'failed'
  } finally {
    void dispatcher.close()
  }
  if (error !== undefined) audit.emit({ event: 'approval.webhook_failed', id: event.id, tool: event.tool, error })
}
