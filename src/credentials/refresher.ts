import { IssuerError, SidekeyError } from '../errors.js'
import type { Timer } from '../util/clock.js'
import { nextDelay } from './backoff.js'
import { asSidekeyError, describeError } from './error-text.js'
import type { IssuedCredential } from './issuer.js'
import type { Credential, RevokeOutcome, ToolCredentialStatus } from './provider.js'
import { refreshTime } from './refresh-time.js'
import type {
  LastRefresh, RefreshOutcome, RefreshReason, RefresherOptions, RefresherState,
} from './refresher-options.js'
import { CredentialStore, isUsable, usableUntil } from './store.js'
import { NO_TRACING, type Span } from '../tracing/index.js'

/**
 * An issuer call is abandoned after this long unless the issuer's config says otherwise (threat model: faults,
 * issuer outages).
 */
export const DEFAULT_ISSUER_TIMEOUT_MS = 10_000
/** How many rejected credential ids a slot remembers having force-refreshed for (bounded: ids only ever grow). */
const FORCED_MEMORY = 16

/** After a refresh forced by a 401, further 401s pass through for this long instead of forcing another. */
export const REJECTED_COOLDOWN_MS = 10_000

/**
 * Keeps one credential slot (issuer, scopes, audience) fresh: scheduled refreshes, retries with backoff, and the
 * forced refreshes of rotate and 401s, all through one issuer call at a time.
 */
export class CredentialRefresher {
  readonly #o: RefresherOptions
  readonly #store: CredentialStore
  #inflight: Promise<RefreshOutcome> | undefined
  #controller: AbortController | undefined
  #timer: Timer | undefined
  #nextAttemptAt: number | undefined
  #expiryTimer: Timer | undefined
  #expiredId: string | undefined
  #failures = 0
  #lastRefresh: LastRefresh | undefined
  readonly #forced = new Set<string>()
  #lastForcedAt: number | undefined
  /** Uses of the credential `#usedId` so far, for `maxUses`. */
  #uses = 0
  #usedId: string | undefined
  #closed = false

  constructor (options: RefresherOptions) {
    this.#o = options
    this.#store = new CredentialStore(options.carried)
    this.#lastRefresh = options.carried?.lastRefresh
  }

  get tools (): readonly string[] { return this.#o.tools }
  get issuerName (): string { return this.#o.issuerName }

  /**
   * Fetches the first credential, or adopts a carried-over one that is still usable. Resolves once the slot has
   * a credential or its first failure; never rejects.
   */
  async start (): Promise<void> {
    const carried = this.#store.usable(this.#o.clock.now())
    if (carried !== undefined) {
      this.#scheduleFor(carried)
      return
    }
    await this.refresh('initial')
  }

  /** The credential to inject now, or undefined. */
  current (): Credential | undefined {
    return this.#store.usable(this.#o.clock.now())
  }

  /**
   * The credential for one call, counted: its `maxUses`-th use starts a refresh in the background, and it keeps
   * serving until the new one is in place. Counted per credential, whichever of the slot's tools used it.
   */
  use (): Credential | undefined {
    const cred = this.current()
    const max = this.#o.maxUses
    if (cred === undefined || max === undefined) return cred
    if (this.#usedId !== cred.id) {
      this.#usedId = cred.id
      this.#uses = 0
    }
    if (++this.#uses === max) void this.refresh('max_uses')
    return cred
  }

  /** Single-flight: while a call is in flight every caller shares its outcome. Never rejects. */
  refresh (reason: RefreshReason, tool?: string): Promise<RefreshOutcome> {
    if (this.#inflight !== undefined) return this.#inflight
    if (this.#closed) return Promise.resolve({ ok: false, error: closedError() })
    this.#clearTimer()
    this.#inflight = this.#run(reason, tool ?? this.#primary).finally(() => { this.#inflight = undefined })
    return this.#inflight
  }

  /**
   * The upstream rejected `rejectedId`. A newer usable credential is returned at once; otherwise one forced
   * refresh (shared with any in flight), never a second one for the same id, and at most one per
   * REJECTED_COOLDOWN_MS.
   */
  async refreshRejected (rejectedId: string, tool: string): Promise<Credential | undefined> {
    const held = this.current()
    if (held !== undefined && held.id !== rejectedId) return held
    if (this.#inflight === undefined) {
      if (this.#forced.has(rejectedId)) return undefined
      // An upstream that rejects every credential must not turn each agent request into an issuer call.
      const now = this.#o.clock.now()
      if (this.#lastForcedAt !== undefined && now - this.#lastForcedAt < REJECTED_COOLDOWN_MS) return undefined
      this.#lastForcedAt = now
      this.#forced.add(rejectedId)
      if (this.#forced.size > FORCED_MEMORY) this.#forced.delete(this.#forced.values().next().value as string)
    }
    await this.refresh('rejected', tool)
    const fresh = this.current()
    return fresh !== undefined && fresh.id !== rejectedId ? fresh : undefined
  }

  /** Fetches now (sharing a call in flight); with `revokePrevious` the replaced credential is dropped at once. */
  async rotate (tool: string, revokePrevious: boolean): Promise<Credential> {
    const outcome = await this.refresh('rotate', tool)
    if (!outcome.ok) throw outcome.error
    if (revokePrevious) {
      const dropped = this.#store.revokePrevious()
      if (dropped !== undefined) this.#o.audit.emit({ event: 'credential.revoked', tool, credential_id: dropped.id })
    }
    return outcome.credential
  }

  /**
   * Fleet revoke: the current and previous credentials are dropped at once for a fresh one (no request is left
   * without a credential while it is fetched), then revoked at the issuer. When no replacement can be had the slot
   * is left empty, failing closed (503), and keeps retrying.
   */
  async revoke (tool: string): Promise<RevokeOutcome> {
    const before = this.#store.snapshot()
    await this.#o.issuer.rekey?.()
    // A fetch already in flight may have been signed with the withdrawn key: the replacement is a fetch of our own.
    if (this.#inflight !== undefined) await this.#inflight
    const outcome = await this.refresh('revoke', tool)
    const keep = outcome.ok ? outcome.credential.id : undefined
    const dropped = new Map<string, Credential>()
    for (const c of [before.current, before.previous, ...this.#store.retain(keep)]) {
      if (c !== undefined && c.id !== keep) dropped.set(c.id, c)
    }
    for (const c of dropped.values()) {
      this.#o.audit.emit({ event: 'credential.revoked', tool, credential_id: c.id, reason: 'fleet' })
    }
    let revokedAtIssuer = 0
    let issuerError: string | undefined
    if (this.#o.issuer.revoke !== undefined) {
      try {
        revokedAtIssuer = await this.#o.issuer.revoke([...dropped.values()], AbortSignal.timeout(this.#o.timeoutMs))
      } catch (err) {
        issuerError = describeError(err, [...dropped.values()].map((c) => c.token.reveal()))
      }
    }
    const unchanged = keep !== undefined && (before.current?.id === keep || before.previous?.id === keep)
    return {
      dropped: dropped.size,
      revokedAtIssuer,
      unchanged,
      issuerType: this.#o.issuer.type,
      revocable: this.#o.issuer.revoke !== undefined,
      ...(outcome.ok ? { credential: outcome.credential } : { error: outcome.error.code }),
      ...(issuerError === undefined ? {} : { issuerError }),
    }
  }

  /** Seconds until the next issuer call (at least 1), for Retry-After. */
  retryAfterSeconds (): number {
    if (this.#inflight !== undefined || this.#nextAttemptAt === undefined) return 1
    return Math.max(1, Math.ceil((this.#nextAttemptAt - this.#o.clock.now()) / 1000))
  }

  status (tool: string): ToolCredentialStatus {
    const now = this.#o.clock.now()
    const cred = this.#store.latest()
    const last = this.#lastRefresh
    return {
      issuer: this.#o.issuerName,
      credential_id: cred?.id ?? null,
      issued_at: cred === undefined ? null : iso(cred.issuedAt),
      expires_at: cred?.expiresAt === undefined ? null : iso(cred.expiresAt),
      age_seconds: cred === undefined ? null : Math.max(0, Math.floor((now - cred.issuedAt) / 1000)),
      expires_in_seconds: cred?.expiresAt === undefined ? null : Math.max(0, Math.floor((cred.expiresAt - now) / 1000)),
      shared_with: this.#others(tool),
      last_refresh: last === undefined
        ? null
        : { result: last.result, at: iso(last.at), ...(last.error === undefined ? {} : { error: last.error }) },
      next_refresh_at: this.#inflight !== undefined || this.#nextAttemptAt === undefined
        ? null
        : iso(this.#nextAttemptAt),
    }
  }

  state (): RefresherState {
    return { ...this.#store.snapshot(), lastRefresh: this.#lastRefresh }
  }

  /** Clears every timer and aborts the call in flight; no event is emitted afterwards. */
  async close (): Promise<void> {
    this.#closed = true
    this.#clearTimer()
    if (this.#expiryTimer !== undefined) this.#o.clock.clearTimeout(this.#expiryTimer)
    this.#expiryTimer = undefined
    this.#controller?.abort(closedError())
    await this.#inflight
  }

  get #primary (): string { return this.#o.tools[0] as string }

  #others (tool: string): string[] {
    return this.#o.tools.filter((t) => t !== tool).sort()
  }

  async #run (reason: RefreshReason, tool: string): Promise<RefreshOutcome> {
    const span = (this.#o.tracing ?? NO_TRACING).root('credential refresh')
    span.set('sidekey.tool', tool)
    span.set('sidekey.issuer', this.#o.issuerName)
    span.set('sidekey.refresh_reason', reason)
    const outcome = await this.#fetch(reason, tool, span.child('issuer fetch', true))
    if (outcome.ok) span.set('sidekey.credential_id', outcome.credential.id)
    else span.fail(outcome.error.code)
    span.end()
    return outcome
  }

  async #fetch (reason: RefreshReason, tool: string, call: Span): Promise<RefreshOutcome> {
    const { clock, issuer, timeoutMs } = this.#o
    const controller = new AbortController()
    this.#controller = controller
    const timer = clock.setTimeout(() => controller.abort(new IssuerError('SIDEKEY_ISSUER_TIMEOUT',
      `issuer "${this.#o.issuerName}" did not answer within ${timeoutMs} ms`)), timeoutMs)
    timer.unref?.()
    let issued: IssuedCredential
    try {
      // Raced against the signal, so an issuer that ignores it still cannot hold the slot past the timeout.
      issued = await raceAbort(Promise.resolve().then(() => issuer.fetch({
        tool: this.#primary,
        scopes: this.#o.scopes,
        audience: this.#o.audience,
        instanceId: this.#o.instanceId,
        signal: controller.signal,
      })), controller.signal)
      if (!isUsable(issued, clock.now())) {
        const why = `issuer "${this.#o.issuerName}" returned a credential that has already expired`
        throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', why)
      }
    } catch (err) {
      call.fail(err instanceof SidekeyError ? err.code : 'SIDEKEY_ISSUER_ERROR')
      return this.#failed(tool, err)
    } finally {
      call.end()
      clock.clearTimeout(timer)
      this.#controller = undefined
    }
    if (this.#closed) return { ok: false, error: closedError() }
    return this.#succeeded(reason, tool, issued)
  }

  #succeeded (reason: RefreshReason, tool: string, issued: IssuedCredential): RefreshOutcome {
    const cred: Credential = {
      token: issued.token,
      id: issued.id,
      issuedAt: issued.issuedAt,
      expiresAt: issued.expiresAt,
      ...(issued.kind === undefined ? {} : { kind: issued.kind }),
      ...(issued.dpop === undefined ? {} : { dpop: issued.dpop }),
    }
    const isNew = this.#store.put(cred)
    this.#failures = 0
    this.#lastRefresh = { result: 'success', at: this.#o.clock.now() }
    if (isNew) {
      this.#o.audit.emit({
        event: 'credential.issued',
        tool,
        issuer: this.#o.issuerName,
        credential_id: cred.id,
        issued_at: iso(cred.issuedAt),
        expires_at: cred.expiresAt === undefined ? null : iso(cred.expiresAt),
        scopes: this.#o.scopes,
        shared_with: this.#others(tool),
        reason,
      })
    }
    this.#scheduleFor(cred)
    return { ok: true, credential: cred }
  }

  #failed (tool: string, err: unknown): RefreshOutcome {
    const error = asSidekeyError(err, this.#secrets())
    if (this.#closed) return { ok: false, error }
    this.#failures += 1
    const retryIn = nextDelay(this.#failures, this.#o.random, err instanceof IssuerError ? err.retryAfterMs : undefined)
    const text = describeError(err, this.#secrets())
    this.#lastRefresh = { result: 'failure', at: this.#o.clock.now(), error: text }
    this.#o.audit.emit({
      event: 'credential.refresh_failed',
      tool,
      issuer: this.#o.issuerName,
      error: text,
      attempt: this.#failures,
      retry_in_ms: retryIn,
      shared_with: this.#others(tool),
    })
    // The current credential (if any) stays: it is served until it expires, and retries continue past that.
    this.#arm(retryIn, () => { void this.refresh(this.#store.latest() === undefined ? 'initial' : 'scheduled') })
    return { ok: false, error }
  }

  /** Tokens this slot holds, scrubbed from any foreign error text as a last line of defence. */
  #secrets (): string[] {
    const now = this.#o.clock.now()
    return [this.#store.latest(), this.#store.previous(now)].flatMap((c) => c === undefined ? [] : [c.token.reveal()])
  }

  #scheduleFor (cred: Credential): void {
    const now = this.#o.clock.now()
    const at = refreshTime(cred, this.#o.refreshAt, this.#o.refreshJitter, this.#o.random)
    if (at === undefined) {
      // Without an expiry only rotate, a 401 or the issuer's onChange fetch again.
      this.#clearTimer()
    } else {
      // An odd issuedAt (issuer clock ahead or behind) must not turn into a refresh loop.
      const floor = Math.min(1000, (usableUntil(cred) - now) / 2)
      this.#arm(Math.max(at - now, floor), () => { void this.refresh('scheduled') })
    }
    this.#armExpiry(cred)
  }

  #armExpiry (cred: Credential): void {
    const { clock } = this.#o
    if (this.#expiryTimer !== undefined) clock.clearTimeout(this.#expiryTimer)
    this.#expiryTimer = undefined
    if (cred.expiresAt === undefined || this.#closed) return
    this.#expiryTimer = clock.setTimeout(() => {
      this.#expiryTimer = undefined
      if (this.#store.latest()?.id !== cred.id || this.#expiredId === cred.id) return
      this.#expiredId = cred.id
      this.#o.audit.emit({ event: 'credential.expired', tool: this.#primary, credential_id: cred.id })
    }, Math.max(0, usableUntil(cred) - clock.now()))
    this.#expiryTimer.unref?.()
  }

  #arm (ms: number, fn: () => void): void {
    this.#clearTimer()
    if (this.#closed) return
    const { clock } = this.#o
    this.#nextAttemptAt = clock.now() + ms
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined
      this.#nextAttemptAt = undefined
      fn()
    }, ms)
    this.#timer.unref?.()
  }

  #clearTimer (): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#nextAttemptAt = undefined
  }
}

function raceAbort<T> (work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    if (signal.aborted) { onAbort(); return }
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

function closedError (): IssuerError {
  return new IssuerError('SIDEKEY_ISSUER_FAILED', 'credential manager closed')
}

function iso (ms: number): string { return new Date(ms).toISOString() }
