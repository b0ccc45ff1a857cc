import type { Credential } from './provider.js'

/** The clock-skew margin never exceeds this... */
export const MAX_SKEW_MS = 30_000
/** ...nor this fraction of the credential's lifetime, so short-lived tokens stay usable. */
export const SKEW_FRACTION = 0.1

/** Milliseconds before `expiresAt` at which a credential stops being served: min(30 s, 10 % of its lifetime). */
export function skewOf (cred: Credential): number {
  if (cred.expiresAt === undefined) return 0
  const lifetime = Math.max(0, cred.expiresAt - cred.issuedAt)
  return Math.min(MAX_SKEW_MS, lifetime * SKEW_FRACTION)
}

/** The last instant (ms since the epoch) `cred` may be injected; Infinity when it does not expire. */
export function usableUntil (cred: Credential): number {
  return cred.expiresAt === undefined ? Infinity : cred.expiresAt - skewOf(cred)
}

/** True while `cred` may be injected: expiresAt − skew > now. */
export function isUsable (cred: Credential, now: number): boolean {
  return usableUntil(cred) > now
}

/**
 * One credential slot's credentials: the current one and the one it replaced. The previous one is kept until it
 * expires or is revoked, so status can show it and a 401 for it is recognised as stale rather than as a rejection
 * of the current one.
 */
export class CredentialStore {
  #current: Credential | undefined
  #previous: Credential | undefined

  constructor (from?: { current: Credential | undefined, previous: Credential | undefined }) {
    this.#current = from?.current
    this.#previous = from?.previous
  }

  /** The newest credential held, usable or not. */
  latest (): Credential | undefined { return this.#current }

  /** The newest credential when it may be injected at `now`, else undefined (fail closed). */
  usable (now: number): Credential | undefined {
    const cur = this.#current
    return cur !== undefined && isUsable(cur, now) ? cur : undefined
  }

  /** The credential replaced by the current one, until it expires. */
  previous (now: number): Credential | undefined {
    const prev = this.#previous
    if (prev !== undefined && prev.expiresAt !== undefined && prev.expiresAt <= now) this.#previous = undefined
    return this.#previous
  }

  /**
   * Makes `cred` current. Returns true when it is a new credential; false when the issuer handed back the one
   * already current (same id), which then only refreshes the stored copy.
   */
  put (cred: Credential): boolean {
    const cur = this.#current
    this.#current = cred
    if (cur === undefined || cur.id !== cred.id) {
      this.#previous = cur
      return true
    }
    return false
  }

  /** Drops the previous credential at once; returns it when there was one. */
  revokePrevious (): Credential | undefined {
    const prev = this.#previous
    this.#previous = undefined
    return prev
  }

  /** Drops every credential but the one with id `keep` (all of them when undefined); returns those dropped. */
  retain (keep: string | undefined): Credential[] {
    const dropped = [this.#current, this.#previous].filter((c): c is Credential => c !== undefined && c.id !== keep)
    if (this.#current?.id !== keep) this.#current = undefined
    this.#previous = undefined
    return dropped
  }

  /** A copy of the pair, for carrying a slot over a config reload. */
  snapshot (): { current: Credential | undefined, previous: Credential | undefined } {
    return { current: this.#current, previous: this.#previous }
  }
}
