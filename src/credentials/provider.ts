import type { Secret } from '../util/secret.js'
import type { JsonWebKeyPublic } from './issuer.js'

/** The exchange a per-call credential is bound to. */
export interface CallBinding {
  readonly method: string
  /** Scheme, authority and path as the upstream sees them, without the query. */
  readonly url: string
  /** The agent's X-Sidekey-Task, when it sent one. */
  readonly task: string | undefined
  /** An MCP tool's JSON-RPC call (`batch` for a batch, without a name): the token names it for the server to check. */
  readonly mcp?: { readonly method: string, readonly name?: string }
}

/** A credential held for a tool. */
export interface Credential {
  readonly token: Secret
  readonly id: string
  readonly issuedAt: number
  readonly expiresAt: number | undefined
  /** `aws_keys`: the token is an AWS key set (credentials/aws-keys.ts). */
  readonly kind?: 'aws_keys'
  /** The DPoP key the token is bound to: injected as `Authorization: DPoP` with a fresh proof per call. */
  readonly dpop?: import('./dpop.js').DpopKey
}

export interface ToolCredentialStatus {
  issuer: string
  credential_id: string | null
  issued_at: string | null
  expires_at: string | null
  age_seconds: number | null
  expires_in_seconds: number | null
  /** Tools sharing the same (issuer, scopes, audience) credential. */
  shared_with: string[]
  last_refresh: { result: 'success' | 'failure', at: string, error?: string } | null
  next_refresh_at: string | null
}

/** What a revoke did to one credential slot. */
export interface RevokeOutcome {
  /** Credentials dropped (current and previous). */
  readonly dropped: number
  /** Of those, how many the issuer confirmed revoked. */
  readonly revokedAtIssuer: number
  /** The replacement, when one could be fetched. */
  readonly credential?: Credential
  /** The error code when no replacement could be fetched. */
  readonly error?: string
  /** Why revoking at the issuer failed (no secret). */
  readonly issuerError?: string
  /** The issuer's type (`file`, `local_jwt`, ...): what a revoke can do depends on it. */
  readonly issuerType: string
  /** The issuer can revoke what was dropped (RFC 7009 `revocation_url`, local_jwt key withdrawal). */
  readonly revocable: boolean
  /** The replacement is a credential already held: the issuer handed the same one back, nothing was revoked. */
  readonly unchanged: boolean
}

/**
 * What the request path and the admin routes see of the credential path (credentials/manager.ts implements it).
 * The request path only calls `current` or `mint` (synchronous, on every request) and `refreshRejected` (after a 401).
 */
export interface CredentialProvider {
  /**
   * The credential to inject for `tool` now, or undefined: fail closed (503). Never waits on an issuer. Each call
   * is one use for `refresh.max_uses`.
   */
  current (tool: string): Credential | undefined
  /**
   * For a tool with `per_call`: a credential signed for this one call, now, without waiting; undefined when none
   * can be signed (fail closed). Never counted against `max_uses`, never pooled.
   */
  mint (tool: string, call: CallBinding): Credential | undefined
  /** Seconds the agent should wait before retrying when `current` is undefined (for Retry-After). */
  retryAfterSeconds (tool: string): number
  /**
   * The upstream answered 401 to a request carrying `rejectedId`. Forces one refresh (single-flight: concurrent
   * callers share it; a credential newer than `rejectedId` is returned at once) and resolves to the new credential,
   * or undefined when none could be had.
   */
  refreshRejected (tool: string, rejectedId: string): Promise<Credential | undefined>
  /**
   * The upstream answered 403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scope>"` (RFC 6750
   * §3.1). When every scope named beyond the tool's own is in its issuer's `step_up_scopes`, resolves to a credential
   * for the widened scopes (fetched once, shared, kept for half its life), to replay that one request with; else
   * undefined: pass the 403 through. Never changes what `current` returns.
   */
  stepUp (tool: string, scope: string): Promise<Credential | undefined>
  /** Fetches a new credential now; with revokePrevious the old one is dropped at once. Throws for an unknown tool. */
  rotate (tool: string, opts?: { revokePrevious?: boolean }): Promise<Credential>
  /**
   * Drops the tool's current and previous credentials at once for a fresh one, and revokes the dropped ones at the
   * issuer where it can (RFC 7009 `revocation_url`; local_jwt withdraws the signing keys). `*`: every credential
   * slot once. Throws for an unknown tool; a failed replacement leaves the tool unready (503), never the old one.
   */
  revoke (tool: string): Promise<RevokeOutcome[]>
  /** Per-tool status, never the credential. */
  status (): Record<string, ToolCredentialStatus>
  /** Tools without a valid credential now. */
  unready (): string[]
  /** Public keys of every signing issuer (local_jwt): current and previous. */
  jwks (): JsonWebKeyPublic[]
}
