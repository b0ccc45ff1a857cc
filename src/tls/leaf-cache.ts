import { createSecureContext, type SecureContext } from 'node:tls'
import { LRUCache } from 'lru-cache'
import { egressDenied, SidekeyError } from '../errors.js'
import { type Clock, systemClock } from '../util/clock.js'
import type { CertificateAuthority } from './ca.js'
import { assertLeafHost } from './names.js'

export interface LeafCacheOptions {
  ca: CertificateAuthority
  /** Lifetime of each leaf (capped by the CA's own notAfter). */
  validityMs: number
  /** LRU bound on cached hosts (default 1000). */
  max?: number
  clock?: Clock
}

interface Entry {
  context: SecureContext
  /** Re-mint from here on: 80 % into the leaf's life, so no handshake gets a leaf about to expire. */
  renewAt: number
}

const RENEW_AT_FRACTION = 0.8

/** What the agent and the audit are told when a tool host lies outside the CA's name constraints. */
export const CA_CONSTRAINT_DETAIL =
  "host is outside the interception CA's name constraints: the operator must run sidekey ca --rotate"

/**
 * TLS contexts for intercepted hosts, one fresh leaf per host: bounded LRU, one mint in flight per host,
 * failures not cached. Hosts arrive already normalised (lower case, no port, no brackets).
 *
 * @example
 *   const leaves = new LeafCache({ ca, validityMs: 7 * DAY })
 *   tls.createServer({ SNICallback: (name, cb) => { leaves.secureContext(name).then((ctx) => cb(null, ctx), cb) } })
 */
export class LeafCache {
  readonly #ca: CertificateAuthority
  readonly #validityMs: number
  readonly #clock: Clock
  readonly #cache: LRUCache<string, Entry>
  readonly #inflight = new Map<string, Promise<SecureContext>>()
  readonly #max: number
  /** Bumped by each prewarm and by stopPrewarm: a run that sees a newer number stops. */
  #prewarmRun = 0

  constructor (opts: LeafCacheOptions) {
    const max = opts.max ?? 1000
    if (!Number.isInteger(max) || max < 1) {
      throw new SidekeyError('SIDEKEY_CONFIG_INVALID', 'leaf cache size must be a positive integer')
    }
    if (!Number.isFinite(opts.validityMs) || opts.validityMs <= 0) {
      throw new SidekeyError('SIDEKEY_CONFIG_INVALID', 'leaf validity must be positive')
    }
    this.#ca = opts.ca
    this.#validityMs = opts.validityMs
    this.#clock = opts.clock ?? systemClock
    this.#max = max
    this.#cache = new LRUCache({ max })
  }

  /**
   * The context for `host`. Rejects with SIDEKEY_BAD_REQUEST for a host that cannot go in a certificate and
   * SIDEKEY_EGRESS_DENIED for one outside the CA's name constraints (no leaf is minted for either).
   */
  async secureContext (host: string): Promise<SecureContext> {
    assertLeafHost(host)
    if (!this.#ca.permits(host)) {
      throw egressDenied(CA_CONSTRAINT_DETAIL, 'ca_constraint')
    }
    const hit = this.#cache.get(host)
    if (hit !== undefined && this.#clock.now() < hit.renewAt) return hit.context
    let pending = this.#inflight.get(host)
    if (pending === undefined) {
      pending = this.#mint(host).finally(() => this.#inflight.delete(host))
      this.#inflight.set(host, pending)
    }
    return await pending
  }

  /** Whether the CA's name constraints let it sign a leaf for `host`. */
  permits (host: string): boolean {
    return this.#ca.permits(host)
  }

  /** Whether a leaf for `host` is cached and not yet due for renewal (does not touch the LRU order). */
  has (host: string): boolean {
    const hit = this.#cache.peek(host)
    return hit !== undefined && this.#clock.now() < hit.renewAt
  }

  /**
   * Mints leaves for `hosts` in the background, one at a time, so that the first CONNECT to each costs what a later
   * one does. At most the cache's size of mints; a host already cached (or being minted), malformed or refused by
   * the CA is skipped, and a failure is not cached (the request path mints again and reports it). Each mint waits
   * its turn behind pending I/O, so a request that needs another leaf never queues behind this. A later call
   * replaces a run still going (a reload's hosts replace the start's). Resolves to the number minted.
   */
  async prewarm (hosts: Iterable<string>): Promise<number> {
    const run = ++this.#prewarmRun
    let minted = 0
    for (const host of new Set(hosts)) {
      await new Promise((resolve) => setImmediate(resolve))
      if (run !== this.#prewarmRun || minted >= this.#max) break
      if (this.has(host) || this.#inflight.has(host)) continue
      try {
        await this.secureContext(host)
        minted++
      } catch { /* not cached: the request path mints again and reports */ }
    }
    return minted
  }

  /** Ends a prewarm run after its current mint (on close). */
  stopPrewarm (): void {
    this.#prewarmRun++
  }

  /** Number of cached contexts (at most `max`). */
  get size (): number {
    return this.#cache.size
  }

  async #mint (host: string): Promise<SecureContext> {
    const mintedAt = this.#clock.now()
    const leaf = await this.#ca.mintLeaf(host, this.#validityMs)
    const cert = leaf.certPem + this.#ca.chainPem
    const context = createSecureContext({ key: leaf.keyPem, cert, minVersion: 'TLSv1.2' })
    this.#cache.set(host, { context, renewAt: mintedAt + RENEW_AT_FRACTION * (leaf.notAfter.getTime() - mintedAt) })
    return context
  }
}
