import type { Secret } from '../util/secret.js'

/** What a tool asks an issuer for. Tools asking for the same (issuer, scopes, audience) share one credential. */
export interface CredentialRequest {
  /** The first tool that asked for this credential; for audit and for issuers that put it in a claim. */
  readonly tool: string
  readonly scopes: readonly string[]
  readonly audience: string | undefined
  /** This agent instance (config `instance_id`). */
  readonly instanceId: string
  /** Aborted when the fetch times out or sidekey stops. */
  readonly signal: AbortSignal
}

/** What a tool with `per_call` asks for on each call: the slot's request, bound to this one HTTP exchange. */
export interface CallCredentialRequest extends Omit<CredentialRequest, 'signal'> {
  /** The token's lifetime. */
  readonly ttlMs: number
  /** The `htm` claim: the request's method. */
  readonly method: string
  /** The `htu` claim: scheme, authority and path the upstream sees, without the query (RFC 9449 §4.2). */
  readonly url: string
  /** The agent's X-Sidekey-Task, when it sent one. */
  readonly task: string | undefined
  /** An MCP call's method and the tool, prompt or resource it names: the `mcp_*` claims. */
  readonly mcp?: { readonly method: string, readonly name?: string }
}

/** A credential as an issuer hands it out. */
export interface IssuedCredential {
  readonly token: Secret
  /** Milliseconds since the epoch; undefined when the credential does not expire (e.g. a static file secret). */
  readonly expiresAt: number | undefined
  /** Milliseconds since the epoch. */
  readonly issuedAt: number
  /** The JWT `jti` when present, else the first 16 hex digits of the token's SHA-256 (`Secret.fingerprint()`). */
  readonly id: string
  /** `aws_keys`: the token is an AWS key set (credentials/aws-keys.ts), for tools that inject `aws_sigv4`. */
  readonly kind?: 'aws_keys'
  /** The DPoP key the token is bound to (`dpop: true`): every use needs a fresh proof of it. */
  readonly dpop?: import('./dpop.js').DpopKey
}

/**
 * One implementation per `issuers.<name>.type`, one file each in issuers/.
 *
 * @example
 *   const cred = await issuer.fetch({ tool: 'github', scopes: ['repo:read'], audience: undefined, instanceId, signal })
 */
export interface Issuer {
  readonly type: string
  /** Fetches a fresh credential. Throws IssuerError (never with a secret in its message) on failure. */
  fetch (request: CredentialRequest): Promise<IssuedCredential>
  /** Signs a credential for one call, synchronously, on the request path (local_jwt). Throws IssuerError. */
  mint? (request: CallCredentialRequest): IssuedCredential
  /** Public signing keys, for issuers that sign (local_jwt); served at /.well-known/jwks.json. */
  jwks? (): readonly JsonWebKeyPublic[]
  /**
   * Fleet revoke, before the replacement is fetched: an issuer that signs (local_jwt) starts a new signing key, so
   * the replacement is not signed by a key about to be withdrawn.
   */
  rekey? (): Promise<void>
  /**
   * Fleet revoke, once the replacement is current: revokes the dropped credentials at the issuer (RFC 7009), or
   * withdraws the keys that signed them from the JWKS. Resolves to how many the issuer confirmed.
   */
  revoke? (dropped: readonly import('./provider.js').Credential[], signal: AbortSignal): Promise<number>
  /** Registers a callback fired when the issuer's source changed (a watched file), so holders refresh now. */
  onChange? (listener: () => void): void
  /** Releases timers and watchers. */
  close? (): void | Promise<void>
}

export interface JsonWebKeyPublic {
  readonly kty: string
  readonly kid: string
  readonly alg: string
  readonly use: 'sig'
  readonly [k: string]: unknown
}

/** What every issuer factory gets from the composition root (app.ts). */
export interface IssuerDeps {
  readonly clock: import('../util/clock.js').Clock
  /**
   * undici dispatcher for the issuer's HTTP calls: trusts `upstream_ca_file` besides the system roots and honours
   * `resolve:` pins. Pass it as `dispatcher` to undici's `request`/`fetch`.
   */
  readonly dispatcher: import('undici').Dispatcher
}

/** The shape of every `issuers/<type>.ts` factory. */
export type IssuerFactory<C> = (name: string, config: C, deps: IssuerDeps) => Issuer
