/**
 * What a `by: fleet` budget asks of the fleet (src/fleet/ answers from the JetStream KV bucket). Synchronous: it
 * answers from the lease of the budget this instance holds, refilled in the background, so a call never waits on
 * the broker.
 */
export interface FleetLedger {
  /**
   * Takes `amount` from this instance's lease of budget `key` (`amount` 0: is anything left?). `exhausted`: the
   * fleet has spent it, and `retryAfterMs` says when the window turns; `unavailable`: the broker is out of reach
   * and no lease is left.
   */
  take (key: string, spec: FleetBudgetSpec, amount: number): FleetTake | Promise<FleetTake>
  /** Counts what was spent after the fact (an answer's tokens): taken from the lease, or owed to the bucket. */
  spend (key: string, spec: FleetBudgetSpec, amount: number): void
  /** What the fleet has left of budget `key` as this instance last saw it (the gauge). */
  remaining (key: string, spec: FleetBudgetSpec): number
}

export interface FleetBudgetSpec {
  readonly limit: number
  readonly perMs: number
  /** A token budget (leased in larger slices than a request budget). */
  readonly tokens: boolean
}

export type FleetTake = { readonly ok: true } | {
  readonly ok: false
  readonly why: 'exhausted' | 'unavailable'
  readonly retryAfterMs: number
  /** `unavailable`: the limit divided among the instances last seen holding leases (`on_broker_loss: local`). */
  readonly share?: number
}
