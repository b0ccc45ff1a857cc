import type { KV } from '@nats-io/kv'
import type { FleetBudgetSpec, FleetLedger, FleetTake } from '../budget/index.js'
import type { Clock } from '../util/clock.js'
import { keyToken } from './bucket.js'

/** A lease is this share of the budget (at most LEASE_MAX_REQUESTS of a request budget): small, so little idles. */
const LEASE_SHARE = 0.1
const LEASE_MAX_REQUESTS = 5
/** Compare-and-set attempts per refill before the broker counts as out of reach for this call. */
const CAS_TRIES = 20

/**
 * The bucket's value for one budget window (`budget.<tool>.<n>.<window>`): what each instance has leased. The
 * fleet spent at most their sum; an instance's own entry also tells it, after a lost reply, whether its last
 * compare-and-set landed.
 */
interface BudgetValue { leases: Record<string, number> }

/** This instance's lease of one budget window. */
interface Lease {
  readonly window: number
  /** Leased here in this window (as the bucket records it). */
  granted: number
  /** Spent here in this window; `granted - spent` is what is left of the lease (negative: owed). */
  spent: number
  /** What the bucket said the whole fleet had leased, when last read. */
  fleet: number
  refill: Promise<void> | undefined
}

/**
 * `by: fleet` budgets counted in the fleet's JetStream KV bucket. Windows are fixed (`per` long, aligned on
 * multiples of it), because a compare-and-set counter cannot slide. Each instance leases a slice at a time with
 * kv.update(key, value, revision), spends it in memory, and leases again when it runs out; the sum of all leases
 * never passes the limit, so neither does the fleet. What a lease still holds is given back at close.
 */
export class FleetBudgetLedger implements FleetLedger {
  readonly #kv: () => KV | undefined
  readonly #connected: () => boolean
  readonly #clock: Clock
  readonly #instance: string
  readonly #leases = new Map<string, Lease>()
  readonly #seenInstances = new Map<string, number>()

  constructor (kv: () => KV | undefined, connected: () => boolean, clock: Clock, instance: string) {
    this.#kv = kv
    this.#connected = connected
    this.#clock = clock
    this.#instance = keyToken(instance)
  }

  take (key: string, spec: FleetBudgetSpec, amount: number): FleetTake | Promise<FleetTake> {
    const lease = this.#lease(key, spec)
    const left = lease.granted - lease.spent
    if (!this.#connected() && left < Math.max(amount, 1)) return this.#lost(key, spec)
    if (left >= Math.max(amount, 1)) {
      lease.spent += amount
      // Half the lease spent: the next is leased in the background, so calls need not wait for it.
      if (lease.granted - lease.spent <= leaseSize(spec) / 2 && lease.fleet < spec.limit && this.#connected()) {
        this.#refill(key, spec, lease).catch(() => {})
      }
      return OK
    }
    if (lease.fleet >= spec.limit) return this.#exhausted(spec)
    return this.#takeAfterRefill(key, spec, lease, amount)
  }

  spend (key: string, spec: FleetBudgetSpec, amount: number): void {
    const lease = this.#lease(key, spec)
    lease.spent += amount
    // Tokens past the lease are owed: the next lease records them, so the fleet's sum stays what was spent.
    if (lease.spent > lease.granted) this.#refill(key, spec, lease).catch(() => {})
  }

  remaining (key: string, spec: FleetBudgetSpec): number {
    const lease = this.#lease(key, spec)
    return Math.max(0, spec.limit - lease.fleet + (lease.granted - Math.min(lease.spent, lease.granted)))
  }

  /** Gives back what each lease of the current windows still holds (at close: another instance can spend it). */
  async giveBack (): Promise<void> {
    const kv = this.#kv()
    if (kv === undefined || !this.#connected()) return
    await Promise.allSettled([...this.#leases].map(async ([id, lease]) => {
      const unused = lease.granted - lease.spent
      if (unused <= 0) return
      await this.#cas(kv, this.#id(id, lease.window), (value) => {
        value.leases[this.#instance] = (value.leases[this.#instance] ?? 0) - unused
        return true
      })
      lease.granted -= unused
    }))
  }

  async #takeAfterRefill (key: string, spec: FleetBudgetSpec, lease: Lease, amount: number): Promise<FleetTake> {
    for (;;) {
      if (!this.#connected()) return this.#lost(key, spec)
      try {
        await this.#refill(key, spec, lease)
      } catch {
        return this.#lost(key, spec)
      }
      if (lease.granted - lease.spent >= Math.max(amount, 1)) {
        lease.spent += amount
        return OK
      }
      if (lease.fleet >= spec.limit || lease.window !== this.#window(spec)) return this.#exhausted(spec)
    }
  }

  /** One refill at a time per lease; callers that find it running wait for it and look again. */
  #refill (key: string, spec: FleetBudgetSpec, lease: Lease): Promise<void> {
    lease.refill ??= this.#lease1(key, spec, lease).finally(() => { lease.refill = undefined })
    return lease.refill
  }

  /** Leases a slice (and records what is owed) with compare-and-set on the window's key. */
  async #lease1 (key: string, spec: FleetBudgetSpec, lease: Lease): Promise<void> {
    const kv = this.#kv()
    if (kv === undefined) throw new Error('no bucket')
    const want = leaseSize(spec)
    await this.#cas(kv, this.#id(key, lease.window), (value) => {
      const mine = value.leases[this.#instance] ?? 0
      // A reply lost to a broker restart: the bucket holds more for us than we knew; that lease is ours.
      if (mine > lease.granted) lease.granted = mine
      const owed = Math.max(0, lease.spent - lease.granted)
      const fleet = sum(value)
      const grant = Math.min(want, spec.limit - fleet - owed)
      lease.fleet = fleet
      if (grant <= 0 && owed === 0) return false
      value.leases[this.#instance] = mine + owed + Math.max(0, grant)
      return true
    }, (value) => {
      lease.granted = value.leases[this.#instance] ?? 0
      lease.fleet = sum(value)
      this.#seenInstances.set(key, Object.keys(value.leases).length)
    })
  }

  /** Read, change, compare-and-set, again on a conflict; `done` sees the value that was written. */
  async #cas (kv: KV, id: string, change: (v: BudgetValue) => boolean, done?: (v: BudgetValue) => void): Promise<void> {
    for (let i = 0; i < CAS_TRIES; i++) {
      const entry = await kv.get(id)
      const live = entry !== null && entry.operation === 'PUT'
      const value: BudgetValue = live ? entry.json<BudgetValue>() : { leases: {} }
      if (!change(value)) return
      try {
        if (live) await kv.update(id, JSON.stringify(value), entry.revision)
        else await kv.create(id, JSON.stringify(value))
        done?.(value)
        return
      } catch (err) {
        if (!isConflict(err)) throw err
      }
    }
    throw new Error('budget compare-and-set kept conflicting')
  }

  #lease (key: string, spec: FleetBudgetSpec): Lease {
    const window = this.#window(spec)
    let lease = this.#leases.get(key)
    if (lease === undefined || lease.window !== window) {
      lease = { window, granted: 0, spent: 0, fleet: 0, refill: undefined }
      this.#leases.set(key, lease)
    }
    return lease
  }

  #window (spec: FleetBudgetSpec): number {
    return Math.floor(this.#clock.now() / spec.perMs)
  }

  #id (key: string, window: number): string {
    return `budget.${key}.${window}`
  }

  /** Broker out of reach, lease spent: `share` is this instance's part (`on_broker_loss: local`). */
  #lost (key: string, spec: FleetBudgetSpec): FleetTake {
    const share = Math.max(1, Math.floor(spec.limit / this.#instances(key)))
    return { ok: false, why: 'unavailable', retryAfterMs: 1000, share }
  }

  /** Instances that held a lease of this budget when the bucket was last read (1 when none did). */
  #instances (key: string): number {
    return Math.max(1, this.#seenInstances.get(key) ?? 1)
  }

  #exhausted (spec: FleetBudgetSpec): FleetTake {
    return { ok: false, why: 'exhausted', retryAfterMs: (this.#window(spec) + 1) * spec.perMs - this.#clock.now() }
  }
}

const OK: FleetTake = Object.freeze({ ok: true })

/** What one lease takes: a tenth of the budget, at most LEASE_MAX_REQUESTS of a request budget, at least 1. */
function leaseSize (spec: FleetBudgetSpec): number {
  const slice = spec.limit * LEASE_SHARE
  return Math.max(1, Math.ceil(spec.tokens ? slice : Math.min(slice, LEASE_MAX_REQUESTS)))
}

function sum (value: BudgetValue): number {
  let total = 0
  for (const n of Object.values(value.leases)) total += n
  return total
}

/** A compare-and-set that lost the race (wrong last sequence, or the key was created meanwhile). */
function isConflict (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return code === 10071 || code === 10164
}
