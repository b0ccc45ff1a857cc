import type { Logger } from 'pino'
import type { KV, KvEntry } from '@nats-io/kv'
import { JetStreamApiCodes } from '@nats-io/jetstream'
import type { Clock, Timer } from '../util/clock.js'
import { errorCode } from '../errors.js'

/** Why commands stopped arriving; logged once per outage. */
export type WatchLoss =
  | 'watch_ended' | 'watch_failed' | 'bucket_missing' | 'bucket_replaced' | 'disconnected' | 'connection_closed'

export interface CommandWatchDeps {
  readonly logger: Logger
  readonly clock: Clock
  /** Verifies and applies one `cmd.` entry; resolves once it is done (entries come one at a time, in bucket order). */
  readonly receive: (entry: KvEntry) => Promise<void>
  /** Told when watching starts (every command in the bucket applied) and when it stops. */
  readonly onChange: (watching: boolean) => void
  readonly random?: () => number
}

/** The log lines of an outage (the tests and operators look for them). */
export const WATCH_LOG = {
  lost: 'fleet: not watching commands; a lock or revocation stored now is applied once watching again',
  back: 'fleet: watching commands again',
  replaced: 'fleet: the bucket was replaced; reading it whole',
} as const

const BACKOFF_MIN_MS = 1000
const BACKOFF_FACTOR = 1.6
const BACKOFF_MAX_MS = 30_000

/**
 * Supervises the watcher of the bucket's `cmd.>` keys. The client's watcher can end, throw, or (with the bucket's
 * stream deleted, or deleted and created again) stay open and deliver nothing: each is an outage, logged once,
 * shown as not watching, and retried with jittered backoff until the bucket answers again.
 *
 * Every (re)start reads the whole bucket. Entries at or below the highest revision already handled in the same
 * stream are skipped, so a command is applied once however often the watcher restarts; a replaced stream (its
 * creation time changed) numbers revisions from 1 again, so everything in it is read, and the replay cache behind
 * `receive` refuses a command seen before under another revision.
 */
export class CommandWatch {
  readonly #d: CommandWatchDeps
  readonly #random: () => number
  #kv: KV | undefined
  #watch: { stop (): void } | undefined
  /** Bumped by every start and loss: a loop or attempt from an older one stops without effect. */
  #generation = 0
  #watching = false
  #lost: { reason: WatchLoss, at: number } | undefined
  #timer: Timer | undefined
  #retryMs = BACKOFF_MIN_MS
  #stopped = false
  /** The stream's creation time, telling a replaced bucket from the same one. */
  #streamCreated: string | undefined
  /** The highest revision of this stream handed to `receive`. */
  #handled = 0

  constructor (deps: CommandWatchDeps) {
    this.#d = deps
    this.#random = deps.random ?? Math.random
  }

  /** True while every stored command has been applied and new ones arrive. */
  get watching (): boolean { return this.#watching }

  /** Starts watching on a bucket handle (a new connection), at once. */
  open (kv: KV): void {
    this.#kv = kv
    this.retryNow()
  }

  /** Tries again now (the connection is back), instead of at the end of the backoff. */
  retryNow (): void {
    if (this.#stopped || this.#kv === undefined) return
    this.#clearTimer()
    void this.#attempt(++this.#generation, this.#kv)
  }

  /**
   * Commands cannot arrive for `reason`: not watching until a retry has read the bucket again. With `detach` (the
   * connection is closed for good) nothing is retried until `open` brings a new bucket handle.
   */
  lose (reason: WatchLoss, err?: unknown, detach = false): void {
    if (this.#stopped) return
    this.#generation++
    this.#watch?.stop()
    this.#watch = undefined
    if (detach) this.#kv = undefined
    this.#setWatching(false)
    const retryInMs = this.#kv !== undefined && this.#timer === undefined ? this.#schedule() : undefined
    if (this.#lost !== undefined) return
    this.#lost = { reason, at: this.#d.clock.now() }
    const fields = { reason, ...(err === undefined ? {} : { err: { code: errorCode(err) } }), retry_in_ms: retryInMs }
    this.#d.logger.warn(fields, WATCH_LOG.lost)
  }

  /** Checks that the bucket being watched still exists and is the same one (run on each heartbeat). */
  async probe (): Promise<void> {
    const kv = this.#kv
    const generation = this.#generation
    if (kv === undefined || !this.#watching) return
    let created: string
    try {
      created = (await kv.status()).streamInfo.created
    } catch (err) {
      // Only a missing stream is a verdict; a timeout is the connection's business (disconnect, reconnect).
      if (isStreamMissing(err) && generation === this.#generation) this.lose('bucket_missing', err)
      return
    }
    if (generation === this.#generation && created !== this.#streamCreated) this.lose('bucket_replaced')
  }

  stop (): void {
    this.#stopped = true
    this.#generation++
    this.#clearTimer()
    this.#watch?.stop()
    this.#watch = undefined
  }

  async #attempt (generation: number, kv: KV): Promise<void> {
    try {
      const created = (await kv.status()).streamInfo.created
      if (generation !== this.#generation) return
      if (created !== this.#streamCreated) {
        if (this.#streamCreated !== undefined) {
          this.#d.logger.info({ handled_revision: this.#handled }, WATCH_LOG.replaced)
        }
        this.#streamCreated = created
        this.#handled = 0
      }
      // Deletes are not ignored by the client: the last entry of the initial batch may be one, and it marks the end.
      const watch = await kv.watch({ key: 'cmd.>' })
      if (generation !== this.#generation) {
        watch.stop()
        return
      }
      this.#watch = watch
      if (await noCommands(kv)) this.#caughtUp(generation)
      for await (const entry of watch) {
        if (generation !== this.#generation) return
        if (entry.revision > this.#handled) {
          this.#handled = entry.revision
          if (entry.operation === 'PUT') await this.#d.receive(entry)
        }
        if (entry.delta === 0 || entry.isUpdate) this.#caughtUp(generation)
      }
      if (generation === this.#generation) this.lose('watch_ended')
    } catch (err) {
      if (generation === this.#generation) this.lose(isStreamMissing(err) ? 'bucket_missing' : 'watch_failed', err)
    }
  }

  #caughtUp (generation: number): void {
    if (generation !== this.#generation || this.#watching) return
    this.#retryMs = BACKOFF_MIN_MS
    const lost = this.#lost
    this.#lost = undefined
    if (lost !== undefined) {
      this.#d.logger.info({ reason: lost.reason, down_ms: this.#d.clock.now() - lost.at }, WATCH_LOG.back)
    }
    this.#setWatching(true)
  }

  /** Arms the next attempt; returns its delay. */
  #schedule (): number {
    const delay = Math.round(this.#retryMs * (0.8 + 0.4 * this.#random()))
    this.#retryMs = Math.min(this.#retryMs * BACKOFF_FACTOR, BACKOFF_MAX_MS)
    this.#timer = this.#d.clock.setTimeout(() => {
      this.#timer = undefined
      this.retryNow()
    }, delay)
    this.#timer.unref?.()
    return delay
  }

  #clearTimer (): void {
    if (this.#timer !== undefined) this.#d.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #setWatching (watching: boolean): void {
    if (this.#watching === watching) return
    this.#watching = watching
    this.#d.onChange(watching)
  }
}

/** No live `cmd.` key: nothing in the bucket to wait for before watching. */
async function noCommands (kv: KV): Promise<boolean> {
  const keys = (await kv.keys('cmd.>'))[Symbol.asyncIterator]()
  const first = await keys.next()
  await keys.return?.()
  return first.done === true
}

function isStreamMissing (err: unknown): boolean {
  return (err as { code?: unknown }).code === JetStreamApiCodes.StreamNotFound
}
