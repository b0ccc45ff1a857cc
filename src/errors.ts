/**
 * Every error sidekey raises on purpose is a SidekeyError with a stable `code`.
 * `status` is the HTTP status the agent sees when the error ends a proxied request;
 * `expose` says whether `message` may be shown to the agent (it never carries a secret either way).
 * Errors become HTTP responses in exactly one place: proxy/respond.ts.
 */
export type ErrorCode =
  | 'SIDEKEY_CONFIG_INVALID'
  | 'SIDEKEY_BAD_REQUEST'
  | 'SIDEKEY_UNKNOWN_TOOL'
  | 'SIDEKEY_MISDIRECTED'
  | 'SIDEKEY_EGRESS_DENIED'
  | 'SIDEKEY_METHOD_DENIED'
  | 'SIDEKEY_PLACEHOLDER_REQUIRED'
  | 'SIDEKEY_TOOL_LOCKED'
  | 'SIDEKEY_BUDGET_EXHAUSTED'
  | 'SIDEKEY_MCP_DENIED'
  | 'SIDEKEY_MCP_BAD_REQUEST'
  | 'SIDEKEY_APPROVAL_DENIED'
  | 'SIDEKEY_APPROVAL_TIMEOUT'
  | 'SIDEKEY_APPROVAL_BODY_TOO_LARGE'
  | 'SIDEKEY_CREDENTIAL_UNAVAILABLE'
  | 'SIDEKEY_UPSTREAM_FAILED'
  | 'SIDEKEY_UPSTREAM_TIMEOUT'
  | 'SIDEKEY_UPSTREAM_TLS'
  | 'SIDEKEY_ISSUER_FAILED'
  | 'SIDEKEY_ISSUER_RESPONSE'
  | 'SIDEKEY_ISSUER_TIMEOUT'
  | 'SIDEKEY_CA_FAILED'
  | 'SIDEKEY_AUDIT_KEY'
  | 'SIDEKEY_OVERLOADED'
  | 'SIDEKEY_INTERNAL'

export class SidekeyError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly expose: boolean
  /**
   * Extra fields safe to put in the JSON error body: `tool`, `reason` (an egress refusal's audit reason), `detail`
   * (a short hint for the agent, in the audit's words: never a secret, path or certificate content).
   */
  readonly details: Readonly<Record<string, string | number>>
  /** The RFC 9209 Proxy-Status error type, when the code alone does not say it (proxy/respond.ts maps the rest). */
  readonly proxyStatus: string | undefined

  constructor (code: ErrorCode, message: string, opts: { status?: number, expose?: boolean, details?: Record<string, string | number>, proxyStatus?: string, cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'SidekeyError'
    this.code = code
    this.status = opts.status ?? 500
    this.expose = opts.expose ?? this.status < 500
    this.details = Object.freeze({ ...(opts.details ?? {}) })
    this.proxyStatus = opts.proxyStatus
  }
}

/** The words for the two commonest refusals, the same on every transport. */
export const NO_TOOL = 'no tool matches this destination'
export const SELF = 'destination is sidekey itself'

/**
 * A refused destination (403): `reason` is the `egress.denied` audit reason and the body's `reason`, `detail` the
 * words the agent and the audit both get.
 */
export function egressDenied (detail: string, reason: string): SidekeyError {
  return new SidekeyError('SIDEKEY_EGRESS_DENIED', detail, { status: 403, details: { reason, detail } })
}

/** Issuer failures carry an optional retry hint (from Retry-After) for the refresher's backoff. */
export class IssuerError extends SidekeyError {
  readonly retryAfterMs: number | undefined
  constructor (code: 'SIDEKEY_ISSUER_FAILED' | 'SIDEKEY_ISSUER_RESPONSE' | 'SIDEKEY_ISSUER_TIMEOUT', message: string, opts: { retryAfterMs?: number, cause?: unknown } = {}) {
    super(code, message, { status: 503, expose: false, cause: opts.cause })
    this.name = 'IssuerError'
    this.retryAfterMs = opts.retryAfterMs
  }
}
