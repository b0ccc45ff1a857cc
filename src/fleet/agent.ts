import { FleetBudgetLedger } from './budget-ledger.js'
import { readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { NatsConnection } from '@nats-io/transport-node'
import type { KV, KvEntry } from '@nats-io/kv'
import type { AuditSink, FleetCommand } from '../audit/events.js'
import type { SignedCheckpoint } from '../audit/trail/key.js'
import type { Config, FleetConfig } from '../config/schema.js'
import type { CredentialProvider } from '../credentials/provider.js'
import type { LockView, ToolLock } from '../proxy/lock-view.js'
import { writeFileAtomic } from '../util/atomic-write.js'
import { systemClock, type Clock, type Timer } from '../util/clock.js'
import { ackDone, KEYS, natsOptions, openBucket, type Ack, type Heartbeat } from './bucket.js'
import {
  CLOCK_SKEW_MS, MAX_COMMAND_LIFETIME_S, verifyCommand, type VerifiedCommand, type Verification,
} from './command.js'
import { loadOperatorKeys, type OperatorPublicKey } from './keys.js'
import { LockTable } from './locks.js'
import { ReplayCache } from './replay.js'
import { revokeResult, type RevokeResult } from './revoke-result.js'
import { CommandWatch } from './watch.js'
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

interface StateFile { version: 1, commands: Array<{ jws: string, stored_at: number, revision: number }> }

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
  readonly #stateFile: string
  readonly #locks = new LockTable()
  readonly #seen = new ReplayCache()
  readonly #startedAt: number
  readonly #pending = new Set<Promise<unknown>>()
  /** Bucket revisions of the lock commands in force (the state file keeps them for the replay check). */
  #revisions = new Map<string, number>()
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
  #saving: Promise<void> | undefined
  #saveAgain = false
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
    this.#instance = deps.config.instance_id
    this.#clock = deps.clock ?? systemClock
    this.#keys = keys
    this.#stateFile = resolve(this.#cfg.state_file ?? join(dirname(resolve(deps.config.ca.dir)), 'fleet-state.json'))
    this.#startedAt = this.#clock.now()
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
    await agent.#restore()
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
    await this.#saving
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
    if (!v.ok) return this.#reject(v.reason, v.claims ?? {}, v.kid, jti)
    const cmd = v.command
    if (cmd.jti !== jti) return this.#reject('key_mismatch', cmd, cmd.kid, jti)
    const until = Math.max(cmd.exp * 1000 + CLOCK_SKEW_MS, now + MAX_COMMAND_LIFETIME_S * 1000)
    const seen = this.#seen.add(cmd.jti, entry.revision, until, now)
    if (seen === 'duplicate') return
    if (seen === 'replayed') return this.#reject('replayed', cmd, cmd.kid, jti)
    if (cmd.instance !== '*' && cmd.instance !== this.#instance) {
      this.#event(cmd, 'not_addressed')
      return
    }
    await this.#apply(cmd, entry.revision)
  }

  async #apply (cmd: VerifiedCommand, revision: number): Promise<void> {
    switch (cmd.action) {
      case 'lock':
      case 'unlock': {
        const current = this.#locks.apply(cmd)
        if (current) this.#save(revision, cmd)
        this.#done(cmd, 'applied')
        return
      }
      case 'approve':
      case 'deny': {
        const refused = decideApproval(this.#d.approvals?.(), cmd)
        if (refused === undefined) this.#done(cmd, 'applied')
        else this.#reject(refused, cmd, cmd.kid, cmd.jti)
        return
      }
      case 'revoke':
      case 'rotate': {
        // Fetched at start, after the command was stored: this process's credentials already satisfy it.
        if (cmd.storedAt < this.#startedAt) return
        const tool = cmd.tool
        if (tool !== '*' && !Object.hasOwn(this.#d.credentials().status(), tool)) {
          this.#done(cmd, 'not_configured')
          return
        }
        // The effect waits on an issuer: run it beside the queue, so a lock behind it applies at once.
        const effect = this.#effect(cmd).then(
          (r) => this.#done(cmd, r.result,
            r.result === 'failed' ? r.error : r.result === 'applied' ? undefined : r.reason),
          () => this.#done(cmd, 'failed', 'SIDEKEY_INTERNAL'))
        this.#pending.add(effect)
        void effect.finally(() => this.#pending.delete(effect))
      }
    }
  }

  /** Runs a revoke or rotate; resolves to what it really did (a revoke may run and still revoke nothing). */
  async #effect (cmd: VerifiedCommand): Promise<RevokeResult> {
    const credentials = this.#d.credentials()
    if (cmd.action === 'revoke') {
      const outcomes = await credentials.revoke(cmd.tool)
      const issuer = outcomes.find((o) => o.issuerError !== undefined)
      if (issuer !== undefined) {
        this.#d.logger.warn({ tool: cmd.tool, error: issuer.issuerError },
          'fleet revoke: the issuer did not confirm the revocation')
      }
      await this.#publishJwks()
      return revokeResult(outcomes)
    }
    const tools = cmd.tool === '*' ? Object.keys(credentials.status()) : [cmd.tool]
    const results = await Promise.allSettled(tools.map((t) => credentials.rotate(t)))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed === undefined) return { result: 'applied' }
    return { result: 'failed', error: (failed.reason as { code?: string }).code ?? 'SIDEKEY_INTERNAL' }
  }

  /** Audits and acknowledges an outcome; `detail` is the error code or the reason a revoke revoked nothing. */
  #done (cmd: VerifiedCommand, result: RevokeResult['result'] | 'not_configured', detail?: string): void {
    const appliedAt = this.#clock.now()
    this.#event(cmd, result === 'not_configured' ? 'applied' : result, detail, appliedAt)
    const answer = result === 'failed' || result === 'not_revocable' ? `${result}: ${detail ?? 'error'}` : result
    this.#ack(cmd.jti, answer, appliedAt, appliedAt - cmd.storedAt)
  }

  #event (cmd: VerifiedCommand, result: FleetCommand['result'], error?: string, appliedAt?: number): void {
    this.#d.audit.emit({
      event: 'fleet.command',
      result,
      action: cmd.action,
      tool: cmd.tool,
      instance: cmd.instance,
      jti: cmd.jti,
      actor: cmd.actor,
      kid: cmd.kid,
      reason: cmd.reason,
      ...(appliedAt === undefined ? {} : { lag_ms: Math.max(0, appliedAt - cmd.iat * 1000) }),
      ...(error === undefined ? {} : { error }),
    })
  }

  #reject (reason: string, claims: Partial<VerifiedCommand>, kid: string | undefined, keyJti: string): void {
    this.#d.audit.emit({
      event: 'fleet.command',
      result: 'rejected',
      error: reason,
      ...pick(claims, ['action', 'tool', 'instance', 'actor']),
      jti: keyJti,
      ...(kid === undefined ? {} : { kid }),
    })
    const tool = typeof claims.tool === 'string' ? claims.tool : null
    this.#d.audit.emit({ event: 'anomaly', kind: 'fleet_command_rejected', tool, detail: `${reason}: cmd.${keyJti}` })
    // The answer is the outcome alone, under the key the command was stored at: nothing else of what the writer
    // chose. A replay gets none: this jti was answered when it first came, and that answer stays true.
    if (reason === 'replayed' || !/^[A-Za-z0-9_-]{1,64}$/.test(keyJti)) return
    this.#ack(keyJti, `rejected: ${reason}`, this.#clock.now())
  }

  #ack (jti: string, result: string, appliedAt: number, lagMs?: number): void {
    const kv = this.#kv
    if (kv === undefined || this.#closed) return
    const ack: Ack = {
      instance: this.#instance,
      jti,
      applied_at: new Date(appliedAt).toISOString(),
      result,
      ...(lagMs === undefined ? {} : { lag_ms: Math.max(0, lagMs) }),
    }
    kv.put(KEYS.ack(jti, this.#instance), JSON.stringify(ack)).catch((err: unknown) => {
      const code = (err as { code?: string }).code ?? 'error'
      this.#d.logger.warn({ jti, err: { code } }, 'fleet: acknowledgement not written')
    })
    if (!ackDone(result)) this.#d.logger.warn({ jti, result }, 'fleet command not applied')
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

  /** Loads the cached lock commands; each is verified again, so the file cannot grant anything a key did not sign. */
  async #restore (): Promise<void> {
    let state: StateFile
    try {
      state = JSON.parse(await readFile(this.#stateFile, 'utf8')) as StateFile
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#d.logger.warn({ file: this.#stateFile }, 'fleet state file unreadable; waiting for the bucket')
      }
      return
    }
    const now = this.#clock.now()
    for (const c of Array.isArray(state.commands) ? state.commands : []) {
      if (typeof c?.jws !== 'string' || typeof c.stored_at !== 'number') continue
      const v = await verifyCommand(c.jws, this.#keys, c.stored_at, now)
      if (!v.ok || (v.command.action !== 'lock' && v.command.action !== 'unlock')) continue
      if (v.command.instance !== '*' && v.command.instance !== this.#instance) continue
      const until = Math.max(v.command.exp * 1000 + CLOCK_SKEW_MS, now + MAX_COMMAND_LIFETIME_S * 1000)
      this.#seen.add(v.command.jti, c.revision, until, now)
      this.#locks.apply(v.command)
      this.#revisions.set(v.command.jti, c.revision)
    }
    const locks = this.#locks.active()
    if (locks.length > 0) {
      this.#d.logger.info({ locks: locks.map((l) => l.tool), file: this.#stateFile },
        'fleet locks restored from the state file')
    }
  }

  /** Writes the lock commands in force to the state file; coalesced, atomic. */
  #save (revision: number, cmd: VerifiedCommand): void {
    this.#revisions.set(cmd.jti, revision)
    if (this.#saving !== undefined) {
      this.#saveAgain = true
      return
    }
    this.#saving = (async () => {
      do {
        this.#saveAgain = false
        const commands = this.#locks.commands()
        this.#revisions = new Map(commands.map((c) => [c.jti, this.#revisions.get(c.jti) ?? 0]))
        const state: StateFile = {
          version: 1,
          commands: commands.map((c) => ({ jws: c.jws, stored_at: c.storedAt, revision: this.#revisions.get(c.jti)! })),
        }
        try {
          await writeFileAtomic(this.#stateFile, JSON.stringify(state) + '\n', 0o600)
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error'
          this.#d.logger.warn({ file: this.#stateFile, err: { code } },
            'fleet state file not written: a restart relies on the bucket')
        }
      } while (this.#saveAgain)
    })().finally(() => { this.#saving = undefined })
  }
}

function pick<T extends object, K extends keyof T> (o: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {}
  for (const k of keys) if (typeof o[k] === 'string') out[k] = o[k]
  return out
}
