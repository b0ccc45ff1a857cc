/** Series names sidekey declares, the prom-client defaults it drops, and its histograms' bucket layouts. */

/**
 * prom-client defaults that `promtool check metrics` rejects (gauges named `_total`). Each is the sum of its
 * per-type sibling (`nodejs_active_handles{type}`, ...), which stays, so nothing is lost.
 */
export const REMOVED_DEFAULT_METRICS: readonly string[] = Object.freeze([
  'nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total',
])

/** Seconds; the whole exchange, from a fast loopback answer to a long LLM stream. */
export const DURATION_BUCKETS: readonly number[] =
  Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
/** Seconds; sidekey's own share, expected well under a millisecond. */
export const OVERHEAD_BUCKETS: readonly number[] =
  Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1])

/** Every series name SidekeyMetrics declares (the dashboard test checks its queries against it). */
export const METRIC_NAMES: readonly string[] = Object.freeze([
  'sidekey_requests_total',
  'sidekey_request_duration_seconds',
  'sidekey_proxy_overhead_seconds',
  'sidekey_credential_age_seconds',
  'sidekey_credential_expires_in_seconds',
  'sidekey_credential_refresh_total',
  'sidekey_anomalies_total',
  'sidekey_egress_denied_total',
  'sidekey_egress_denied_by_reason_total',
  'sidekey_tool_ready',
  'sidekey_tool_ca_covered',
  'sidekey_tls_client_error_total',
  'sidekey_admin_denied_total',
  'sidekey_tools',
  'sidekey_egress_unmatched_mode',
  'sidekey_ca_expires_in_seconds',
  'sidekey_audit_dropped_total',
  'sidekey_audit_errors_total',
  'sidekey_fleet_connected',
  'sidekey_fleet_watching',
  'sidekey_fleet_commands_total',
  'sidekey_fleet_apply_seconds',
  'sidekey_budget_remaining',
  'sidekey_budget_exhausted_total',
  'sidekey_mcp_calls_total',
])

/** Seconds from a fleet command's signing (`iat`, whole seconds) to applied here. */
export const FLEET_APPLY_BUCKETS: readonly number[] =
  Object.freeze([0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 600])
