/**
 * Every error sidekey raises on purpose is a SidekeyError with a stable `code`.
 * `status` is the HTTP status the agent sees when the error ends a proxied request;
 * `expose` says whether `message` may be shown to the agent (it never carries a secret either way).
 * Errors become HTTP responses in exactly one place: proxy/respond.ts.
 */
/** What one error code means to the agent: the HTTP status, the body's `error` name, the RFC 9209 Proxy-Status type. */
export interface ErrorSpec {
  readonly status: number
  readonly name: string
  readonly proxyStatus: string
}

const REQUEST_ERROR = 'http_request_error'
const DENIED = 'http_request_denied'
const INTERNAL = 'proxy_internal_error'

/**
 * Every code sidekey raises, in one table (as fastify's error table and undici's error classes bind theirs): a throw
 * site picks a code, never a status. A new code does not compile until it has its row, and `respond.ts` reads its
 * body name and Proxy-Status type from here, so the three can never disagree.
 */
export const ERRORS = {
  SIDEKEY_CONFIG_INVALID: { status: 500, name: 'internal_error', proxyStatus: 'proxy_configuration_error' },
  SIDEKEY_BAD_REQUEST: { status: 400, name: 'bad_request', proxyStatus: REQUEST_ERROR },
  SIDEKEY_HEADERS_TOO_LARGE: { status: 431, name: 'bad_request', proxyStatus: REQUEST_ERROR },
  SIDEKEY_REQUEST_TIMEOUT: { status: 408, name: 'bad_request', proxyStatus: REQUEST_ERROR },
  SIDEKEY_UNKNOWN_TOOL: { status: 404, name: 'unknown_tool', proxyStatus: REQUEST_ERROR },
  SIDEKEY_MISDIRECTED: { status: 421, name: 'misdirected_request', proxyStatus: DENIED },
  SIDEKEY_EGRESS_DENIED: { status: 403, name: 'egress_denied', proxyStatus: DENIED },
  SIDEKEY_METHOD_DENIED: { status: 403, name: 'method_denied', proxyStatus: DENIED },
  /** TRACE and CONNECT to a tool, which never carry a credential: 405 with `Allow` (RFC 9110 §15.5.6). */
  SIDEKEY_METHOD_NOT_ALLOWED: { status: 405, name: 'method_denied', proxyStatus: DENIED },
  SIDEKEY_PLACEHOLDER_REQUIRED: { status: 403, name: 'placeholder_required', proxyStatus: DENIED },
  SIDEKEY_TOOL_LOCKED: { status: 403, name: 'tool_locked', proxyStatus: DENIED },
  SIDEKEY_BUDGET_EXHAUSTED: { status: 429, name: 'budget_exhausted', proxyStatus: DENIED },
  /** A refused MCP tool call is answered in MCP's own terms: 200 with a result the model reads as the tool's error. */
  SIDEKEY_MCP_DENIED: { status: 200, name: 'mcp_denied', proxyStatus: DENIED },
  SIDEKEY_MCP_BAD_REQUEST: { status: 400, name: 'bad_request', proxyStatus: REQUEST_ERROR },
  SIDEKEY_MCP_BODY_TOO_LARGE: { status: 413, name: 'bad_request', proxyStatus: REQUEST_ERROR },
  SIDEKEY_APPROVAL_DENIED: { status: 403, name: 'approval_denied', proxyStatus: DENIED },
  SIDEKEY_APPROVAL_TIMEOUT: { status: 403, name: 'approval_timeout', proxyStatus: DENIED },
  SIDEKEY_APPROVAL_BODY_TOO_LARGE: { status: 413, name: 'approval_body_too_large', proxyStatus: REQUEST_ERROR },
  SIDEKEY_CREDENTIAL_UNAVAILABLE: {
    status: 503, name: 'credential_unavailable', proxyStatus: 'proxy_internal_response',
  },
  SIDEKEY_UPSTREAM_FAILED: { status: 502, name: 'upstream_failed', proxyStatus: 'destination_unavailable' },
  SIDEKEY_UPSTREAM_TIMEOUT: { status: 504, name: 'upstream_timeout', proxyStatus: 'connection_timeout' },
  SIDEKEY_UPSTREAM_TLS: { status: 502, name: 'upstream_tls_failed', proxyStatus: 'tls_protocol_error' },
  SIDEKEY_ISSUER_FAILED: { status: 503, name: 'internal_error', proxyStatus: INTERNAL },
  SIDEKEY_ISSUER_RESPONSE: { status: 503, name: 'internal_error', proxyStatus: INTERNAL },
  SIDEKEY_ISSUER_TIMEOUT: { status: 503, name: 'internal_error', proxyStatus: INTERNAL },
  SIDEKEY_CA_FAILED: { status: 500, name: 'internal_error', proxyStatus: INTERNAL },
  SIDEKEY_AUDIT_KEY: { status: 500, name: 'internal_error', proxyStatus: INTERNAL },
  SIDEKEY_OVERLOADED: { status: 503, name: 'overloaded', proxyStatus: 'connection_limit_reached' },
  SIDEKEY_INTERNAL: { status: 500, name: 'internal_error', proxyStatus: INTERNAL },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

/**
 * The one stable code of any error, for logs and audit lines: a SidekeyError's own, else Node's or the platform's
 * `code` (ENOENT, UND_ERR_SOCKET), else its class name; never its message, which may quote input.
 */
export function errorCode (err: unknown): string {
  if (err instanceof SidekeyError) return err.code
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code)) return code
  const name = (err as { name?: unknown } | null)?.name
  return typeof name === 'string' && /^[A-Za-z]{1,40}$/.test(name) ? name : 'unknown'
}

export interface ErrorOptions {
  /** Whether `message` may be shown to the agent; by default for 4xx. */
  readonly expose?: boolean
  readonly details?: Record<string, string | number>
  /** A Proxy-Status type that says more than the code's (an upstream failure's cause). */
  readonly proxyStatus?: string
  readonly cause?: unknown
}

export class SidekeyError extends Error {
  readonly code: ErrorCode
  /** The HTTP status the agent sees, from the code's row of ERRORS. */
  readonly status: number
  readonly expose: boolean
  /**
   * Extra fields safe to put in the JSON error body: `tool`, `reason` (an egress refusal's audit reason), `detail`
   * (a short hint for the agent, in the audit's words: never a secret, path or certificate content).
   */
  readonly details: Readonly<Record<string, string | number>>
  /** The RFC 9209 Proxy-Status error type, when the code alone does not say it (proxy/respond.ts maps the rest). */
  readonly proxyStatus: string | undefined

  constructor (code: ErrorCode, message: string, opts: ErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'SidekeyError'
    this.code = code
    this.status = ERRORS[code].status
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
  return new SidekeyError('SIDEKEY_EGRESS_DENIED', detail, { details: { reason, detail } })
}

/** Issuer failures carry an optional retry hint (from Retry-After) for the refresher's backoff. */
export class IssuerError extends SidekeyError {
  readonly retryAfterMs: number | undefined
  constructor (
    code: 'SIDEKEY_ISSUER_FAILED' | 'SIDEKEY_ISSUER_RESPONSE' | 'SIDEKEY_ISSUER_TIMEOUT', message: string,
    opts: { retryAfterMs?: number, cause?: unknown } = {}
  ) {
    super(code, message, { expose: false, cause: opts.cause })
    this.name = 'IssuerError'
    this.retryAfterMs = opts.retryAfterMs
  }
}
