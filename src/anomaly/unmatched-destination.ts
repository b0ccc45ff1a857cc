import type { AuditEvent } from '../audit/events.js'
import type { AnomalyFinding, Detector } from './detector.js'

const MAX_HOST = 253
/** Refusals of a malformed request rather than of a destination: not this anomaly. */
const NOT_A_DESTINATION: ReadonlySet<string> = new Set([
  'bad_request', 'bad_request_target', 'bad_connect_target', 'headers_too_large',
])

const cut = (s: string): string => s.length > MAX_HOST ? s.slice(0, MAX_HOST) + '…' : s

/** `egress.denied`: the agent tried to reach a destination no tool covers (or egress rules forbid). */
export class UnmatchedDestinationDetector implements Detector {
  readonly kind = 'unmatched_destination' as const

  observe (event: AuditEvent): AnomalyFinding | undefined {
    if (event.event !== 'egress.denied' || event.host === '' || NOT_A_DESTINATION.has(event.reason)) return undefined
    const method = event.method === undefined || event.method === '' ? '' : `${event.method} `
    const asked = event.requested === undefined ? '' : `, asked for ${cut(event.requested)}`
    const detail = `${method}${cut(event.host)}:${event.port} denied (${event.reason}${asked})`
    return { kind: this.kind, tool: null, detail }
  }
}
