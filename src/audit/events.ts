/**
 * The typed audit events: what the request and credential paths publish, and what the observation path
 * (log, metrics, anomaly detectors) consumes. Field names are the wire names the README's "Audit events" documents.
 * No event field ever holds a credential: only its `credential_id`.
 */

export type PlaceholderState = 'stripped' | 'absent' | 'unexpected'

export interface CredentialIssued {
  event: 'credential.issued'
  tool: string
  issuer: string
  credential_id: string
  issued_at: string
  expires_at: string | null
  scopes: readonly string[]
  /** Other tools sharing this credential. */
  shared_with?: readonly string[]
  /**
   * Why it was fetched: initial, scheduled, rotate, rejected (upstream 401), changed (source file changed), max_uses.
   */
  reason?: string
}

export interface CredentialRefreshFailed {
  event: 'credential.refresh_failed'
  tool: string
  issuer: string
  /** Error code and a message without secrets. */
  error: string
  attempt: number
  retry_in_ms: number
  /** Other tools sharing the credential that failed to refresh (counted in their refresh metrics too). */
  shared_with?: readonly string[]
}

export interface CredentialRevoked {
  event: 'credential.revoked'
  tool: string
  credential_id: string
  /** Why: `fleet` for a signed fleet revoke; absent for POST /rotate?revoke=previous. */
  reason?: 'fleet'
}
export interface CredentialExpired { event: 'credential.expired', tool: string, credential_id: string }

/** What a `credential.used` line says of an MCP call. */
export interface McpCallAudit {
  readonly method: string
  readonly name?: string
  readonly batch?: readonly McpCallAudit[]
}

export interface CredentialUsed {
  event: 'credential.used'
  tool: string
  credential_id: string | null
  method: string
  host: string
  /** Without the query string. */
  path: string
  status: number
  duration_ms: number
  /** The agent's address as `IP:PORT`. */
  client: string
  placeholder: PlaceholderState
  request_id: string
  /**
   * Set when the request was refused before reaching upstream (method_denied, misdirected, credential_unavailable,
   * ...).
   */
  outcome?: string
  /** For failures: a stable error code (e.g. `SIDEKEY_UPSTREAM_TLS/CERT_HAS_EXPIRED`), never a message. */
  error?: string
  /**
   * For failures: the hint the agent got in its error body (`upstream certificate not trusted: set upstream_ca_file`).
   */
  detail?: string
  /** Milliseconds of the exchange spent in sidekey itself (before the upstream request was sent). */
  overhead_ms?: number
  /** True when the request was replayed after a 401 and a forced refresh. */
  replayed?: boolean
  /** Response body bytes relayed to the agent. */
  bytes_out?: number
  /**
   * Where the upstream sent the injected credential back: lower-cased response header names, and `body`. The
   * agent got the placeholder in its place; the value is never logged.
   */
  echoed?: readonly string[]
  /** outcome budget_exhausted: the budget that ran out (`requests:50/1h/instance`). */
  budget?: string
  /**
   * Absolute-form request whose Host header named another authority than its URL; the URL's was used (threat
   * model: the agent, credential scope).
   */
  host_mismatch?: boolean
  /** The agent's X-Sidekey-Task for this call (an opaque id it chose; never a metric label: ids are unbounded). */
  task?: string
  /**
   * An MCP tool's call (src/mcp/): the JSON-RPC method and the MCP tool, resource or prompt it names (a batch: per
   * member). With outcome `mcp_denied` the policy refused it and it never reached the server.
   */
  mcp?: McpCallAudit
  /** The origin dialled instead of `host` (the tool's `upstream:`): where the credential actually went. */
  upstream?: string
  /** The request's trace (with `tracing:`, when its span was sampled): joins this line to the trace. */
  trace_id?: string
}

/**
 * A WebSocket message (or control frame) after the 101 held the credential injected at its handshake: the
 * `credential.used` with the same `request_id`, written at the 101, could not know. At most once per socket and
 * direction; never the value.
 */
export interface CredentialEchoed {
  event: 'credential.echoed'
  tool: string
  credential_id: string
  method: string
  host: string
  /** Without the query string. */
  path: string
  client: string
  request_id: string
  /** Where: `ws` (WebSocket messages). */
  echoed: readonly string[]
  /** `upstream`: the tool sent it back. `agent`: the agent sent it, which it should never hold; forwarded unchanged. */
  from: 'upstream' | 'agent'
  /** The agent got the placeholder in its place (the tool's `scrub_body`); false: it was only reported. */
  replaced: boolean
  task?: string
}

export interface EgressDenied {
  event: 'egress.denied'
  host: string
  port: number
  reason: string
  client?: string
  method?: string
  request_id?: string
  /** The path without its query. */
  path?: string
  /**
   * `misdirected`: the authority (Host, absolute URL, or TLS server name) the agent named inside a tunnel to `host`.
   */
  requested?: string
  /** The tool whose request was refused when dialling its upstream (e.g. `private_address`: an unpinned name). */
  tool?: string
  /** The request's trace (with `tracing:`, when its span was sampled): joins this line to the trace. */
  trace_id?: string
}

/**
 * `egress.unmatched: tunnel`: a destination no tool covers was passed through untouched, with no credential: an
 * absolute-form request (its status is the upstream's, or sidekey's 502/504 when the upstream failed) or a blind
 * CONNECT tunnel (written once the tunnel is up, status 200, or when dialling it failed).
 */
export interface EgressPassed {
  event: 'egress.passed'
  host: string
  port: number
  method: string
  status: number
  client: string
  request_id: string
  /** The path without its query (absolute-form only). */
  path?: string
  duration_ms?: number
  /** For failures: a stable error code, never a message. */
  error?: string
  /** For failures: the hint the agent got in its error body. */
  detail?: string
  /** The request's trace (with `tracing:`, when its span was sampled): joins this line to the trace. */
  trace_id?: string
}

/** Where a credential sat in a request, as `egress.inventory` records it: never the value. */
export interface CarriedCredential {
  /**
   * `authorization` (a scheme other than Basic), `basic` (Authorization: Basic), `header` (another header), `query`.
   */
  placement: 'authorization' | 'basic' | 'header' | 'query'
  /** The header or query parameter name, lower-cased for headers. */
  name: string
  /** The Authorization scheme as sent (`Bearer`, `token`, …); absent for other placements. */
  scheme?: string
  /** The value's known prefix (`sk-`, `ghp_`, `xoxb-`, `AKIA`, …), `jwt`, or `opaque`. */
  kind: string
  /** A short keyed hash (HMAC-SHA256 under the instance's inventory key), to count distinct credentials. */
  fingerprint: string
}

/**
 * `egress.unmatched: inventory`: a call to a destination no tool covers, passed through with the agent's own headers
 * (TLS intercepted), and where it carried a credential. The path is its shape (ids folded), never the query.
 */
export interface EgressInventory {
  event: 'egress.inventory'
  scheme: 'http' | 'https'
  host: string
  port: number
  method: string
  path: string
  status: number
  client: string
  request_id: string
  duration_ms: number
  credentials: readonly CarriedCredential[]
  /** Names the key the fingerprints were made with: fingerprints under different keys cannot be compared. */
  fingerprint_key: string
  error?: string
  /** For failures: the hint the agent got in its error body. */
  detail?: string
  /** The request's trace (with `tracing:`, when its span was sampled): joins this line to the trace. */
  trace_id?: string
}

/**
 * An agent's TLS handshake with sidekey's leaf failed inside an intercepted tunnel: most often the agent does not
 * trust sidekey's CA (`unknown_ca`, after a CA change or a missing ca.pem). Logged at most 10 times a minute per
 * host and alert, with `suppressed` counting the lines held back; every one is counted.
 */
export interface TlsClientError {
  event: 'tls.client_error'
  host: string
  port: number
  client: string
  /** The TLS alert the client sent (`unknown_ca`, `bad_certificate`, ...), or `closed`/`timeout`/`other`. */
  alert: TlsClientAlert
}

export type TlsClientAlert = typeof TLS_CLIENT_ALERTS[number]

/** Every value `alert` takes (the metric's label): a fixed set, whatever the client sends. */
export const TLS_CLIENT_ALERTS = [
  'unknown_ca', 'bad_certificate', 'certificate_unknown', 'certificate_expired', 'certificate_revoked',
  'unsupported_certificate', 'decrypt_error', 'handshake_failure', 'protocol_version', 'internal_error', 'closed',
  'timeout', 'other',
] as const

export interface Anomaly {
  event: 'anomaly'
  kind: AnomalyKind
  tool: string | null
  detail: string
}

export type AnomalyKind = 'unmatched_destination' | 'unexpected_credential' | 'method_denied' | 'new_endpoint' |
  'rate_spike' | 'auth_failures' | 'credential_echoed' | 'fleet_command_rejected' | 'budget_exhausted'

/**
 * A fleet command this sidecar saw (src/fleet/): `applied`, `failed` (verified, but the effect failed, e.g. the
 * issuer was down for a revoke), `rejected` (bad signature, stale, replayed, malformed: `error` says why; an
 * anomaly too), `not_addressed` (verified, for another instance) or `not_revocable` (a revoke this instance's issuer
 * cannot carry out, e.g. a `file` secret read again unchanged). Fields from an unverified command are absent.
 */
export interface FleetCommand {
  event: 'fleet.command'
  result: 'applied' | 'failed' | 'rejected' | 'not_addressed' | 'not_revocable'
  action?: string
  tool?: string
  /** The instance scope the command named (an instance id or `*`). */
  instance?: string
  jti?: string
  actor?: string
  kid?: string
  reason?: string
  /** From the command's `iat` to applied here (clock skew included). */
  lag_ms?: number
  /**
   * For rejected and failed: a stable reason (`bad_signature`, `expired`, `replayed`, ...); for not_revocable, why a
   * revoke could not revoke (`file issuer: rotate the secret at its source`). Never a secret.
   */
  error?: string
}

/**
 * The admin port refused a POST: `unauthorized` (no or a wrong Bearer token; nothing of what was sent is kept) or
 * `rate_limited` (a rotation of the same credential less than `retry_after_s` ago).
 */
export interface AdminDenied {
  event: 'admin.denied'
  /** `/reload`, `/rotate`, or `other`: never the caller's own path text. */
  route: '/reload' | '/rotate' | 'other'
  /** The caller's address as `IP:PORT`. */
  client: string
  reason: typeof ADMIN_DENIED_REASONS[number]
  /** A configured tool named by the route. */
  tool?: string
  retry_after_s?: number
}

/** Every value `AdminDenied.reason` takes (the metric's label). */
export const ADMIN_DENIED_REASONS = ['unauthorized', 'rate_limited'] as const

/** What every approval event says of the held call: which approval, of which tool, on which sidecar. */
export interface ApprovalSubject {
  /** The approval's id: what a human approves (`sidekey approvals approve ID`) and what an operator's command names. */
  id: string
  tool: string
  instance: string
  /** SHA-256 (hex) of the held request's body: an operator's command must name it too. */
  body_sha256: string
}

/**
 * A call held for approval (src/approvals/): what it is, so a human can decide. `path` is redacted as every audit
 * path is; `preview` is the body's first bytes with anything secret-shaped replaced (docs/threat-model.md, "A log
 * reader"). The webhook receives this same JSON.
 */
export interface ApprovalRequested extends ApprovalSubject {
  event: 'approval.requested'
  method: string
  host: string
  path: string
  body_bytes: number
  preview: string
  request_id: string
  client: string
  task?: string
  mcp?: McpCallAudit
  /** When the call is refused as timed out (ISO 8601). */
  timeout_at: string
}

/**
 * A decision on a held call: `granted` and `denied` name who (`admin`, or an operator key's kid); `expired` is the
 * timeout. An approval given after the call timed out lets the identical call through once within `valid_for`.
 */
export interface ApprovalDecided extends ApprovalSubject {
  event: 'approval.granted' | 'approval.denied' | 'approval.expired'
  by?: string
  reason?: string
  /** Milliseconds from the request to this decision. */
  wait_ms: number
  /** A decision on a call that had already timed out (it no longer counts as pending). */
  after_timeout?: boolean
}

/** The approval webhook could not be delivered: audited, and the call still waits for a decision. */
export interface ApprovalWebhookFailed {
  event: 'approval.webhook_failed'
  id: string
  tool: string
  /** A stable reason (`status_500`, `timeout`, `redirect`, `ECONNREFUSED`): never the hook's answer. */
  error: string
}

export type ApprovalEvent = ApprovalRequested | ApprovalDecided | ApprovalWebhookFailed

export type AuditEvent = CredentialIssued | CredentialRefreshFailed | CredentialRevoked | CredentialExpired |
  CredentialUsed | CredentialEchoed | EgressDenied | EgressPassed | EgressInventory | TlsClientError | Anomaly |
  FleetCommand | AdminDenied | ApprovalEvent

/** Where the request and credential paths publish. Implementations must not throw and must not block. */
export interface AuditSink {
  emit (event: AuditEvent): void
}
