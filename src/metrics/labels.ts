import type { AnomalyKind } from '../audit/events.js'

/**
 * The bounded value sets of the `tool`, `method`, `kind`, `reason` and `mode` labels, and the folding of raw
 * methods and statuses into them.
 */

export const UNMATCHED_TOOL = '_unmatched'
export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'OTHER'] as const
export type MethodLabel = typeof METHODS[number]
export const ANOMALY_KINDS: readonly AnomalyKind[] = Object.freeze([
  'unmatched_destination', 'unexpected_credential', 'method_denied', 'new_endpoint', 'rate_spike', 'auth_failures',
  'credential_echoed', 'fleet_command_rejected', 'budget_exhausted',
] as const)
/**
 * The `reason` label of sidekey_egress_denied_by_reason_total. An `egress.denied` event whose reason is not one
 * of these is counted as `other`.
 */
export const EGRESS_DENY_REASONS = [
  'no_tool', 'port', 'private_address', 'self', 'scheme', 'resolve_failed', 'misdirected', 'connect_in_tunnel',
  'ca_constraint', 'bad_request', 'bad_task', 'bad_request_target', 'bad_connect_target', 'headers_too_large', 'other',
] as const

export const EGRESS_MODES = ['deny', 'tunnel', 'inventory'] as const
export type EgressMode = typeof EGRESS_MODES[number]

export const METHOD_INDEX: ReadonlyMap<string, number> = new Map(METHODS.map((m, i) => [m, i]))
export const OTHER_METHOD = METHODS.length - 1

/** A method as the `method` label: one of METHODS. */
export function methodLabel (method: string): MethodLabel {
  return METHODS[METHOD_INDEX.get(method) ?? OTHER_METHOD]!
}

/** A status as the `code` label: the number when it is a valid HTTP status, else 0 (no response). */
export function codeLabel (status: number): number {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? status : 0
}
