import { FleetBudgetLedger } from './budget-ledger.js'
import { dirname, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { NatsConnection } from '@nats-io/transport-node'
import type { KV, KvEntry } from '@nats-io/kv'
import type { AuditSink } from '../audit/events.js'
import type { SignedCheckpoint } from '../audit/trail/key.js'
import type { Config, FleetConfig } from '../config/schema.js'
import type { CredentialProvider } from '../credentials/provider.js'
import type { LockView, ToolLock } from '../proxy/lock-view.js'
import { systemClock, type Clock, type Timer } from '../util/clock.js'
import { KEYS, natsOptions, openBucket, type Heartbeat } from './bucket.js'
import {
  CLOCK_SKEW_MS, MAX_COMMAND_LIFETIME_S, verifyCommand, type VerifiedCommand, type Verification,
} from './command.js'
import { loadOperatorKeys, type OperatorPublicKey } from './keys.js'
import { LockTable } from './locks.js'
import { ReplayCache } from './replay.js'
import { runCredentialCommand } from './credential-command.js'
import { CommandWatch } from './watch.js'
import { CommandOutcome } from './command-outcome.js'
import { LockStateFile } from './lock-state-file.js'
import { errorCode } from '../errors.js'
import type { ApprovalDesk } from '../approvals/index.js'
import { decideApproval, publishApprovals } from './approvals.js'

/** What fleet control may do to the credential path: the admin port's provider, no more. */
export type FleetCredentials = Pick<CredentialProvider, 'rotate' | 'revoke' | 'status' | 'jwks'>

export interface FleetAgentDeps {
  readonly config: Readonly<Config> & { readonly fleet: FleetConfig }
  /** The credentials of the config in force (changes on reload). */
  readonly credentials: () => FleetCredentials
  readonly audit: AuditSink
  readonly logger: Logger
  readonly version: string
  readonly clock?: Clock
  /** Calls held for approval here: decided by signed approve/deny commands, published to the bucket as they come. */
  readonly approvals?: () => ApprovalDesk
}

/** What /status shows of the fleet. */
export interface FleetStatus {
  readonly connected: boolean
  /** Every command in the bucket applied and new ones arriving (false during an outage of the watcher). */
  readonly synced: boolean
  readonly bucket: string
  readonly locks: ToolLock[]
}

const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 30_000

/**
 * One sidecar's fleet control: watches the bucket's `cmd.>` keys and applies every command that verifies (command.ts)
 * and names this instance; acknowledges, heartbeats and publishes its local_jwt public keys. The request path sees
 * only `lockOf` (in memory, synchronous): a broker outage never reaches a request.
 *
 * Lock state is derived from verified lock/unlock commands only, never from an unsigned value. It is cached in
 * `state_file` (the JWS themselves, re-verified on load), so a restart refuses a locked tool from its first request,
 * broker or not; the bucket then brings whatever was missed.
 *
 * @example
 *   const fleet = await FleetAgent.create({ config, credentials: () => runtime.credentials, audit, logger, version })
 *   fleet.start()                 // connects in the background, with backoff
 *   fleet.lockOf('github')        // ToolLock | undefined
 *   await fleet.close()
 */
export class FleetAgent implements LockView {
  readonly #d: FleetAgentDeps
  readonly #cfg: FleetConfig
  readonly #instance: string
  readonly #clock: Clock
  readonly #keys: ReadonlyMap<string, OperatorPublicKey>
  readonly #stateFile: LockStateFile
  readonly #outcome: CommandOutcome
  readonly #locks = new LockTable()
  readonly #seen = new ReplayCache()
  readonly #startedAt: number
  readonly #pending = new Set<Promise<unknown>>()
  #nc: NatsConnection | undefined
  #kv: KV | undefined
  #budgets: FleetBudgetLedger | undefined
  #connected = false
  /** The bucket has been read once (readiness with `required: true`; an outage later does not undo it). */
  #readOnce = false
  readonly #watch: CommandWatch
  #closed = false
  #timer: Timer | undefined
  #hbTimer: Timer | undefined
  #retryMs = RETRY_MIN_MS
  #publishedJwks = ''
  /** The newest audit checkpoint not yet in the bucket, and the put in flight (one at a time, the newest wins). */
  #checkpoint: SignedCheckpoint | undefined
  #publishingCheckpoint: Promise<void> | undefined
  readonly #syncWaiters: Array<() => void> = []
  /** Commands are verified and applied one at a time, in the order the bucket delivers them. */
  #queue: Promise<void> = Promise.resolve()

  private constructor (deps: FleetAgentDeps, keys: ReadonlyMap<string, OperatorPublicKey>) {
    this.#d = deps
    this.#cfg = deps.config.fleet
    const instance = this.#instance = deps.config.instance_id
    this.#clock = deps.clock ?? systemClock
    this.#keys = keys
    const stateFile = resolve(this.#cfg.state_file ?? join(dirname(resolve(deps.config.ca.dir)), 'fleet-state.json'))
    this.#stateFile = new LockStateFile(stateFile, this.#locks, deps.logger)
    this.#startedAt = this.#clock.now()
    const kv = (): KV | undefined => this.#closed ? undefined : this.#kv
    this.#outcome = new CommandOutcome({ audit: deps.audit, logger: deps.logger, clock: this.#clock, instance, kv })
    this.#watch = new CommandWatch({
      logger: deps.logger,
      clock: this.#clock,
      receive: (entry) => this.#enqueue(entry),
      onChange: (watching) => { if (watching) this.#markSynced() },
    })
  }

  /** Reads the operator keys (a bad file refuses to start) and the cached lock state. Does not connect. */
  static async create (deps: FleetAgentDeps): Promise<FleetAgent> {
    const agent = new FleetAgent(deps, await loadOperatorKeys(deps.config.fleet.operator_keys))
    publishApprovals(deps.approvals?.(), () => agent.#kv)
    await agent.#stateFile.restore(agent.#keys, agent.#instance, agent.#seen, agent.#clock.now())
    return agent
  }

  lockOf (tool: string): ToolLock | undefined {
    return this.#locks.lockOf(tool)
  }

  /** `by: fleet` budgets, counted in this bucket (src/fleet/budget-ledger.ts); leases given back at close. */
  budgetLedger (): FleetBudgetLedger {
    this.#budgets ??= new FleetBudgetLedger(() => this.#kv, () => this.#connected, this.#clock, this.#instance)
    return this.#budgets
  }

  /** False while `required: true` and the bucket has not been read once. */
  ready (): boolean {
    return !this.#cfg.required || this.#readOnce
  }

  get connected (): boolean { return this.#connected }

  /** True while commands arrive: the `sidekey_fleet_watching` gauge. */
  get watching (): boolean { return this.#watch.watching }

  /** Resolves once the bucket's commands have been read and applied once (tests, required: true). */
  synced (): Promise<void> {
    if (this.#watch.watching) return Promise.resolve()
    return new Promise((resolve) => this.#syncWaiters.push(resolve))
  }

  status (): FleetStatus {
    const synced = this.#watch.watching
    return { connected: this.#connected, synced, bucket: this.#cfg.bucket, locks: this.#locks.active() }
  }

  /**
   * Puts a signed audit checkpoint at `checkpoint.<instance>` (the latest only), so a log cut after its last local
   * checkpoint is still caught by the copy in the bucket. Never waits on the broker: while it is away only the newest
   * checkpoint is kept, and written on the next heartbeat after it is back.
   */
  publishCheckpoint (cp: SignedCheckpoint): void {
    this.#checkpoint = cp
    this.#flushCheckpoint()
  }

  #flushCheckpoint (): void {
    const kv = this.#kv
    const cp = this.#checkpoint
    if (kv === undefined || cp === undefined || this.#closed || !this.#connected) return
    if (this.#publishingCheckpoint !== undefined) return
    this.#checkpoint = undefined
    const value = {
      instance: this.#instance,
      run_id: cp.run_id,
      seq: cp.seq,
      chain: cp.chain,
      final: cp.final,
      iat: cp.iat,
      jws: cp.jws,
    }
    this.#publishingCheckpoint = kv.put(KEYS.checkpoint(this.#instance), JSON.stringify(value)).then(
      () => {
        this.#publishingCheckpoint = undefined
        this.#flushCheckpoint()
      },
      () => {
        // Kept for the next heartbeat, unless a newer one came meanwhile.
        this.#checkpoint ??= cp
        this.#publishingCheckpoint = undefined
      })
  }

  /** Connects in the background; failures are logged and retried with backoff (1 s … 30 s). */
  start (): void {
    void this.#connect()
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#watch.stop()
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    if (this.#hbTimer !== undefined) this.#clock.clearTimeout(this.#hbTimer)
    await Promise.allSettled([...this.#pending])
    await this.#queue
    await this.#stateFile.saving
    await this.#publishingCheckpoint
    await this.#budgets?.giveBack()
    const nc = this.#nc
    this.#nc = undefined
    this.#connected = false
    await nc?.close().catch(() => {})
  }

  async #connect (): Promise<void> {
    if (this.#closed) return
    try {
      const options = await natsOptions(this.#cfg, `sidekey ${this.#instance}`)
      // Once connected the client reconnects by itself, for ever; the watcher below survives it.
      const { nc, kv } = await openBucket(this.#cfg, {
        ...options, maxReconnectAttempts: -1, reconnectTimeWait: 1000, pingInterval: 10_000, maxPingOut: 2,
      })
      if (this.#closed) {
        await nc.close()
        return
      }
      this.#nc = nc
      this.#kv = kv
      this.#connected = true
      this.#retryMs = RETRY_MIN_MS
      this.#d.logger.info({ servers: this.#cfg.nats.servers, bucket: this.#cfg.bucket }, 'fleet connected')
      void this.#watchStatus(nc)
      void nc.closed().then((err) => {
        this.#connected = false
        if (this.#nc === nc) this.#nc = undefined
        if (this.#closed) return
        this.#watch.lose('connection_closed', err, true)
        this.#retry(err ?? new Error('connection closed'))
      })
      this.#watch.open(kv)
      this.#heartbeat()
    } catch (err) {
      this.#retry(err)
    }
  }

  #retry (err: unknown): void {
    if (this.#closed) return
    this.#d.logger.warn({ err: { code: errorCode(err) }, retry_in_ms: this.#retryMs },
      'fleet broker unavailable; serving from config and the cached state')
    this.#timer = this.#clock.setTimeout(() => { void this.#connect() }, this.#retryMs)
    this.#timer.unref?.()
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS)
  }

  async #watchStatus (nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.#connected = false
        this.#d.logger.warn('fleet disconnected; reconnecting')
        this.#watch.lose('disconnected')
      } else if (s.type === 'reconnect') {
        this.#connected = true
        this.#d.logger.info('fleet reconnected')
        this.#heartbeat()
        this.#watch.retryNow()
      }
    }
  }

  #markSynced (): void {
    if (!this.#readOnce) this.#d.logger.info({ locks: this.#locks.active().length }, 'fleet state read')
    this.#readOnce = true
    for (const resolve of this.#syncWaiters.splice(0)) resolve()
  }

  /** Commands are verified and applied one at a time, in the order the bucket delivers them. */
  #enqueue (entry: KvEntry): Promise<void> {
    this.#queue = this.#queue.then(() => this.#receive(entry)).catch(() => {})
    return this.#queue
  }

  async #receive (entry: KvEntry): Promise<void> {
    if (this.#closed || entry.operation !== 'PUT') return
    const jti = entry.key.slice('cmd.'.length)
    const now = this.#clock.now()
    const v: Verification = await verifyCommand(entry.string(), this.#keys, entry.created.getTime(), now)
    if (!v.ok) return this.#outcome.reject(v.reason, v.claims ?? {}, v.kid, jti)
    const cmd = v.command
    if (cmd.jti !== jti) return this.#outcome.reject('key_mismatch', cmd, cmd.kid, jti)
    const until = Math.max(cmd.exp * 1000 + CLOCK_SKEW_MS, now + MAX_COMMAND_LIFETIME_S * 1000)
    const seen = this.#seen.add(cmd.jti, entry.revision, until, now)
    if (seen === 'duplicate') return
    if (seen === 'replayed') return this.#outcome.reject('replayed', cmd, cmd.kid, jti)
    if (cmd.instance !== '*' && cmd.instance !== this.#instance) {
      this.#outcome.event(cmd, 'not_addressed')
      return
    }
    await this.#apply(cmd, entry.revision)
  }

  async #apply (cmd: VerifiedCommand, revision: number): Promise<void> {
    switch (cmd.action) {
      case 'lock':
      case 'unlock': {
        const current = this.#locks.apply(cmd)
        if (current) this.#stateFile.save(revision, cmd)
        this.#outcome.done(cmd, 'applied')
        return
      }
      case 'approve':
      case 'deny': {
        const refused = decideApproval(this.#d.approvals?.(), cmd)
        if (refused === undefined) this.#outcome.done(cmd, 'applied')
        else this.#outcome.reject(refused, cmd, cmd.kid, cmd.jti)
        return
      }
      case 'revoke':
      case 'rotate': {
        // Fetched at start, after the command was stored: this process's credentials already satisfy it.
        if (cmd.storedAt < this.#startedAt) return
        const tool = cmd.tool
        if (tool !== '*' && !Object.hasOwn(this.#d.credentials().status(), tool)) {
          this.#outcome.done(cmd, 'not_configured')
          return
        }
        // The effect waits on an issuer: run it beside the queue, so a lock behind it applies at once.
        const credentials = this.#d.credentials()
        const effect = runCredentialCommand(cmd, credentials, this.#d.logger, () => this.#publishJwks()).then(
          (r) => this.#outcome.done(cmd, r.result,
            r.result === 'failed' ? r.error : r.result === 'applied' ? undefined : r.reason),
          () => this.#outcome.done(cmd, 'failed', 'SIDEKEY_INTERNAL'))
        this.#pending.add(effect)
        void effect.finally(() => this.#pending.delete(effect))
      }
    }
  }

  #heartbeat (): void {
    const kv = this.#kv
    if (kv === undefined || this.#closed) return
    const hb: Heartbeat = {
      instance: this.#instance,
      version: this.#d.version,
      last_seen: new Date(this.#clock.now()).toISOString(),
      heartbeat_ms: this.#cfg.heartbeat,
      locks: this.#locks.active(),
    }
    kv.put(KEYS.heartbeat(this.#instance), JSON.stringify(hb)).catch(() => {})
    void this.#watch.probe()
    void this.#publishJwks()
    this.#flushCheckpoint()
    if (this.#hbTimer !== undefined) this.#clock.clearTimeout(this.#hbTimer)
    this.#hbTimer = this.#clock.setTimeout(() => this.#heartbeat(), this.#cfg.heartbeat)
    this.#hbTimer.unref?.()
  }

  /** `jwks.<instance>`: this instance's local_jwt public keys, written when they changed. */
  async #publishJwks (): Promise<void> {
    const kv = this.#kv
    if (kv === undefined || this.#closed) return
    const keys = this.#d.credentials().jwks()
    const text = JSON.stringify(keys)
    if (text === this.#publishedJwks) return
    try {
      const updatedAt = new Date(this.#clock.now()).toISOString()
      await kv.put(KEYS.jwks(this.#instance), JSON.stringify({ instance: this.#instance, keys, updated_at: updatedAt }))
      this.#publishedJwks = text
    } catch { /* the next heartbeat tries again */ }
  }
}
