import type { AuditSink } from '../audit/events.js'
import type { Clock } from '../util/clock.js'
import { describeError } from './error-text.js'
import type { Issuer } from './issuer.js'
import type { Credential } from './provider.js'

/** What a tool may be stepped up to: its own request and the scopes its issuer allows on top. */
export interface StepUpSpec {
  readonly tool: string
  readonly issuerName: string
  readonly issuer: Issuer
  readonly scopes: readonly string[]
  readonly audience: string | undefined
  readonly allowed: ReadonlySet<string>
  readonly instanceId: string
  readonly timeoutMs: number
}

/** RFC 6749 §3.3 scope-token characters; a challenge asking for more tokens than this is not followed. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/
const MAX_CHALLENGE_SCOPES = 16

/**
 * The scopes a 403 `insufficient_scope` challenge asks for (RFC 6750 §3.1 `scope`) added to the tool's own, or
 * undefined when the challenge names nothing new or anything the config does not allow.
 */
export function stepUpScopes (spec: StepUpSpec, challenge: string): string[] | undefined {
  const asked = challenge.split(' ').filter((s) => s !== '')
  const usable = asked.length > 0 && asked.length <= MAX_CHALLENGE_SCOPES && asked.every((s) => SCOPE_TOKEN.test(s))
  if (!usable) return undefined
  const own = new Set(spec.scopes)
  const extra = asked.filter((s) => !own.has(s))
  if (extra.length === 0 || !extra.every((s) => spec.allowed.has(s))) return undefined
  return [...new Set([...spec.scopes, ...extra])].sort()
}

/**
 * Stepped-up credentials by (tool, scopes): fetched once for concurrent callers, kept until half their life has
 * passed, then fetched again on the next challenge. Never refreshed in the background: the tool's own credential
 * stays what `current` injects; a stepped-up one is only for the replay of a request that was refused for scope.
 */
export class StepUpCache {
  readonly #held = new Map<string, Credential>()
  readonly #inflight = new Map<string, Promise<Credential | undefined>>()

  constructor (private readonly clock: Clock, private readonly audit: AuditSink) {}

  get (spec: StepUpSpec, scopes: readonly string[]): Promise<Credential | undefined> {
    const key = JSON.stringify([spec.tool, scopes])
    const held = this.#held.get(key)
    if (held !== undefined && this.#fresh(held)) return Promise.resolve(held)
    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      pending = this.#fetch(spec, scopes).then((cred) => {
        if (cred !== undefined) this.#held.set(key, cred)
        return cred
      }).finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, pending)
    }
    return pending
  }

  #fresh (cred: Credential): boolean {
    return cred.expiresAt === undefined || this.clock.now() < cred.issuedAt + (cred.expiresAt - cred.issuedAt) / 2
  }

  async #fetch (spec: StepUpSpec, scopes: readonly string[]): Promise<Credential | undefined> {
    const signal = AbortSignal.timeout(spec.timeoutMs)
    try {
      const { tool, audience, instanceId } = spec
      const issued = await spec.issuer.fetch({ tool, scopes, audience, instanceId, signal })
      const { token, id, issuedAt, expiresAt, dpop } = issued
      const cred: Credential = { token, id, issuedAt, expiresAt, ...(dpop === undefined ? {} : { dpop }) }
      this.audit.emit({
        event: 'credential.issued',
        tool: spec.tool,
        issuer: spec.issuerName,
        credential_id: cred.id,
        issued_at: new Date(cred.issuedAt).toISOString(),
        expires_at: cred.expiresAt === undefined ? null : new Date(cred.expiresAt).toISOString(),
        scopes,
        reason: 'step_up',
      })
      return cred
    } catch (err) {
      this.audit.emit({
        event: 'credential.refresh_failed',
        tool: spec.tool,
        issuer: spec.issuerName,
        error: `${describeError(err, [])} (step-up to ${scopes.join(' ')})`,
        attempt: 1,
        retry_in_ms: 0,
      })
      return undefined
    }
  }
}
