import type { Logger } from 'pino'
import { systemClock, type Clock, type Timer } from '../../util/clock.js'
import { AuditChain } from './chain.js'
import {
  loadOrCreateAuditKey, readLastCheckpoint, signCheckpoint, verifyCheckpoint, writeLastCheckpoint,
  type AuditJwk, type AuditKey, type SignedCheckpoint,
} from './key.js'

/** Written in `audit.started`: what a verifier must understand to check this run. */
export const TRAIL_FORMAT = 'sidekey-audit/1'

export interface CheckpointEvery {
  /** Lines written since the last checkpoint. */
  events: number
  /** Milliseconds since the last checkpoint (only when a line was written since). */
  interval: number
}

export interface AuditTrailOptions {
  /** A logger whose lines are sealed by `chain` (createLogger's default). */
  logger: Logger
  chain: AuditChain
  /** Where the audit key and the last checkpoint live (the CA directory). */
  dir: string
  instanceId: string
  every: CheckpointEvery
  clock?: Clock
}

/** The fleet hook: told every checkpoint once written to the log. Must not throw or block. */
export type CheckpointListener = (checkpoint: SignedCheckpoint) => void

/**
 * The tamper-evident side of the log: opens the run with `audit.started` (the run's public key and the previous
 * run's last checkpoint), then writes a signed `audit.checkpoint` every `every.events` lines or `every.interval`,
 * and a final one on close. Each checkpoint is also kept on disk for the next run and handed to the listeners
 * (`onCheckpoint`), which is how a fleet channel can publish it off the node: a trail cut after its last local
 * checkpoint is then still caught by the copy elsewhere.
 *
 * @example
 *   const trail = await AuditTrail.open({ logger, chain, dir: config.ca.dir, instanceId, every: { events: 1000,
 * interval: 60_000 } })   const stop = trail.onCheckpoint((cp) => publish(`sidekey.audit.${cp.iss}`, cp.jws))
 *   await trail.close()
 */
export class AuditTrail {
  readonly key: AuditKey
  readonly #log: Logger
  readonly #chain: AuditChain
  readonly #dir: string
  readonly #instanceId: string
  #every: CheckpointEvery
  readonly #clock: Clock
  readonly #listeners = new Set<CheckpointListener>()
  #timer: Timer | undefined
  #closed = false
  /** The newest checkpoint not yet on disk, and the write in progress (one at a time, the newest wins). */
  #unsaved: SignedCheckpoint | undefined
  #saving: Promise<void> | undefined

  private constructor (opts: AuditTrailOptions, key: AuditKey) {
    this.key = key
    this.#log = opts.logger.child({ instance_id: opts.instanceId })
    this.#chain = opts.chain
    this.#dir = opts.dir
    this.#instanceId = opts.instanceId
    this.#every = opts.every
    this.#clock = opts.clock ?? systemClock
  }

  static async open (opts: AuditTrailOptions): Promise<AuditTrail> {
    const key = await loadOrCreateAuditKey(opts.dir)
    // Only a checkpoint this key signed: after the key file was replaced, the old one proves nothing.
    const last = await readLastCheckpoint(opts.dir)
    const previous = last !== undefined && verifyCheckpoint(last.jws, key.publicJwk).ok ? last : undefined
    const trail = new AuditTrail(opts, key)
    trail.#log.info({
      event: 'audit.started',
      format: TRAIL_FORMAT,
      key: key.publicJwk,
      previous: previous ?? null,
      checkpoint_every: { events: opts.every.events, interval_ms: opts.every.interval },
    })
    opts.chain.checkpointEvery(opts.every.events, () => { trail.checkpoint(false) })
    trail.#arm()
    return trail
  }

  /** The public key, as served at `GET /audit-key`. */
  get jwks (): { keys: AuditJwk[] } {
    return { keys: [this.key.publicJwk] }
  }

  /** Adds a checkpoint listener; returns its removal. */
  onCheckpoint (listener: CheckpointListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * Signs the chain of the last line written and writes `audit.checkpoint` (unless nothing was written since the
   * last one). Returns what was signed.
   */
  checkpoint (final: boolean): SignedCheckpoint | undefined {
    if (this.#closed) return undefined
    const chain = this.#chain
    if (!final && chain.sinceCheckpoint === 0) return undefined
    const iat = Math.floor(this.#clock.now() / 1000)
    const claims = { iss: this.#instanceId, run_id: chain.runId, seq: chain.seq, chain: chain.last, final, iat }
    const cp: SignedCheckpoint = { ...claims, jws: signCheckpoint(this.key, claims) }
    this.#log.info({ event: 'audit.checkpoint', checkpoint: { seq: cp.seq, chain: cp.chain, final }, jws: cp.jws })
    chain.checkpointed()
    this.#arm()
    this.#save(cp)
    for (const listener of this.#listeners) {
      try { listener(cp) } catch { /* a listener's failure is its own; the trail goes on */ }
    }
    return cp
  }

  /** New checkpoint spacing (a config reload); the interval restarts from now. */
  setEvery (every: CheckpointEvery): void {
    if (this.#closed) return
    this.#every = every
    this.#chain.checkpointEvery(every.events, () => { this.checkpoint(false) })
    this.#arm()
  }

  /** Writes the final checkpoint (the run's last line) and waits until it is on disk. Nothing is logged after it. */
  async close (): Promise<void> {
    if (this.#closed) return
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.checkpoint(true)
    this.#closed = true
    this.#chain.checkpointEvery(Infinity, () => {})
    await this.#saving
  }

  #arm (): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    const timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      this.checkpoint(false)
      if (this.#timer === undefined && !this.#closed) this.#arm()
    }, this.#every.interval)
    timer.unref?.()
    this.#timer = timer
  }

  #save (cp: SignedCheckpoint): void {
    this.#unsaved = cp
    this.#saving ??= (async () => {
      while (this.#unsaved !== undefined) {
        const next = this.#unsaved
        this.#unsaved = undefined
        try {
          await writeLastCheckpoint(this.#dir, next)
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error'
          this.#log.warn({ err: { code }, dir: this.#dir },
            'cannot keep the last audit checkpoint on disk: the next run cannot name it')
        }
      }
      this.#saving = undefined
    })()
  }
}
