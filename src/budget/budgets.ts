import type { ToolConfig } from '../config/schema.js'
import { formatDuration } from '../util/duration.js'
import type { Clock } from '../util/clock.js'
import type { FleetBudgetSpec, FleetLedger, FleetTake } from './ledger.js'
import { UsageScanner } from './usage.js'
import { SlidingWindow } from './window.js'

/** Task keys held per `by: task` budget: past this the least recently seen task's count is dropped. */
export const MAX_TASKS = 4096

/** The key calls without X-Sidekey-Task share under `by: task`. */
export const NO_TASK = '-'

type BudgetConfig = NonNullable<ToolConfig['budget']>[number]
/** A call's X-Sidekey-Task, if it sent one. */
type Task = string | undefined

/** A call's budget verdict: refused, admitted with tokens to count (a charge), or admitted. */
export type Verdict = BudgetRefusal | BudgetCharge | undefined

/** Why a call may not start: the budget that ran out (its label), and when it frees enough for one more. */
export interface BudgetRefusal {
  readonly budget: string
  readonly retryAfterSeconds: number
  /** The first refusal by this budget (and task) in its window: the one that raises the anomaly. */
  readonly first: boolean
  /** `unavailable`: a fleet budget whose broker is out of reach, refused under `on_broker_loss: deny`. */
  readonly why: 'exhausted' | 'unavailable'
}

/** One budget of one tool, with its windows (one, or one per task). */
class Rule {
  readonly label: string
  readonly config: BudgetConfig
  readonly limit: number
  readonly fleetKey: string
  readonly windows = new Map<string, SlidingWindow>()
  /** When the window a refusal was flagged in ends, per key: one anomaly per budget, key and window. */
  readonly flagged = new Map<string, number>()
  exhausted = 0

  constructor (tool: string, index: number, config: BudgetConfig) {
    this.config = config
    this.limit = config.requests ?? config.tokens!
    const kind = config.requests !== undefined ? 'requests' : 'tokens'
    this.label = `${kind}:${this.limit}/${formatDuration(config.per)}/${config.by}`
    this.fleetKey = `${tool}.${index}`
  }

  /** Takes over what `from` (the same budget line, before a reload) counted. */
  inherit (from: Rule): void {
    for (const [key, window] of from.windows) this.windows.set(key, window)
    for (const [key, until] of from.flagged) this.flagged.set(key, until)
    this.exhausted = from.exhausted
  }

  get tokens (): boolean {
    return this.config.tokens !== undefined
  }

  get spec (): FleetBudgetSpec {
    return { limit: this.limit, perMs: this.config.per, tokens: this.tokens }
  }

  /** The window counting `key`, made on first use; a task's is moved to the back of the LRU order. */
  window (key: string, limit = this.limit): SlidingWindow {
    let window = this.windows.get(key)
    if (window !== undefined && this.config.by === 'task') this.windows.delete(key)
    window ??= new SlidingWindow(limit, this.config.per)
    this.windows.set(key, window)
    if (this.windows.size > MAX_TASKS) this.windows.delete(this.windows.keys().next().value!)
    return window
  }
}

/**
 * Every tool's budgets on this instance: `admit` before a call's credential goes on, `settle` (through the
 * returned charge) once its answer has passed. Outlives config reloads: a budget whose line is unchanged keeps
 * what it counted.
 */
export class Budgets {
  readonly #clock: Clock
  #rules = new Map<string, readonly Rule[]>()
  #ledger: FleetLedger | undefined

  constructor (clock: Clock) {
    this.#clock = clock
  }

  configure (tools: Readonly<Record<string, ToolConfig>>): void {
    const next = new Map<string, readonly Rule[]>()
    for (const [name, tool] of Object.entries(tools)) {
      if (tool.budget === undefined || tool.budget.length === 0) continue
      const old = this.#rules.get(name) ?? []
      next.set(name, tool.budget.map((config, i) => {
        const rule = new Rule(name, i, config)
        const kept = old[i]
        if (kept !== undefined && kept.label === rule.label) rule.inherit(kept)
        return rule
      }))
    }
    this.#rules = next
  }

  /** The fleet's count of `by: fleet` budgets (src/fleet/), given once the fleet is up. */
  useFleet (ledger: FleetLedger): void {
    this.#ledger = ledger
  }

  has (tool: string): boolean {
    return this.#rules.has(tool)
  }

  /**
   * Admits a call or says which budget refuses it. An admitted call's request is counted now (reserved); its
   * tokens when the answer has passed. A call that would start over budget is refused; one running is never cut.
   * Synchronous but for a fleet budget whose lease is spent (one broker round trip to lease more).
   */
  admit (tool: string, task: string | undefined): Verdict | Promise<Verdict> {
    const rules = this.#rules.get(tool)
    if (rules === undefined) return undefined
    const now = this.#clock.now()
    for (const rule of rules) {
      if (this.#fleet(rule)) continue
      // A token budget admits a call while a token is left; a request budget while the call itself fits.
      const waitMs = this.#local(rule, task).waitFor(1, now)
      if (waitMs > 0) return this.#refusal(rule, task, waitMs, 'exhausted', now)
    }
    return this.#takeFleet(rules, 0, task, now, [])
  }

  /** Takes the fleet budgets from index `i` on, in order; a refusal gives back what was taken before it. */
  #takeFleet (rules: readonly Rule[], i: number, task: Task, now: number, taken: Rule[]): Verdict | Promise<Verdict> {
    for (; i < rules.length; i++) {
      const rule = rules[i]!
      if (!this.#fleet(rule)) continue
      const take = this.#ledger!.take(rule.fleetKey, rule.spec, rule.tokens ? 0 : 1)
      const next = i + 1
      if (take instanceof Promise) {
        return take.then((t) => this.#taken(rule, t, task, now, taken) ??
          this.#takeFleet(rules, next, task, now, taken))
      }
      const refusal = this.#taken(rule, take, task, now, taken)
      if (refusal !== undefined) return refusal
    }
    for (const rule of rules) if (!rule.tokens && !this.#fleet(rule)) this.#local(rule, task).add(1, now)
    const tokenRules = rules.filter((r) => r.tokens)
    return tokenRules.length === 0 ? undefined : new BudgetCharge(this, tokenRules, task)
  }

  /** A fleet take's outcome: undefined when the call may go on (from the lease, or this instance's share). */
  #taken (rule: Rule, take: FleetTake, task: Task, now: number, taken: Rule[]): BudgetRefusal | undefined {
    let refusal: BudgetRefusal | undefined
    if (!take.ok && take.why === 'unavailable' && rule.config.on_broker_loss === 'local') {
      // Broker lost: this instance spends its share of the budget, counted here until the broker is back.
      const share = rule.window(`${keyOf(rule, task)}\0share`, take.share ?? rule.limit)
      const waitMs = share.waitFor(1, now)
      if (waitMs > 0) refusal = this.#refusal(rule, task, waitMs, 'exhausted', now)
      else if (!rule.tokens) share.add(1, now)
    } else if (!take.ok) {
      refusal = this.#refusal(rule, task, take.retryAfterMs, take.why, now)
    }
    if (refusal === undefined) {
      taken.push(rule)
      return undefined
    }
    for (const t of taken) if (!t.tokens) this.#ledger!.spend(t.fleetKey, t.spec, -1)
    return refusal
  }

  /** What each budget has left (a `by: task` budget: the task closest to its limit), for the gauge. */
  remaining (): Array<{ tool: string, budget: string, value: number }> {
    const now = this.#clock.now()
    const rows: Array<{ tool: string, budget: string, value: number }> = []
    for (const [tool, rules] of this.#rules) {
      for (const rule of rules) {
        let value = rule.limit
        if (this.#fleet(rule)) value = this.#ledger!.remaining(rule.fleetKey, rule.spec)
        else for (const w of rule.windows.values()) value = Math.min(value, w.remaining(now))
        rows.push({ tool, budget: rule.label, value })
      }
    }
    return rows
  }

  /** Calls refused per budget since start (the counter). */
  exhausted (): Array<{ tool: string, budget: string, value: number }> {
    return [...this.#rules].flatMap(([tool, rules]) => rules.map((r) => ({
      tool, budget: r.label, value: r.exhausted,
    })))
  }

  /** Counts an answer's tokens against the call's token budgets. */
  spend (rules: readonly Rule[], task: string | undefined, tokens: number): void {
    if (tokens <= 0) return
    const now = this.#clock.now()
    for (const rule of rules) {
      if (this.#fleet(rule)) this.#ledger!.spend(rule.fleetKey, rule.spec, tokens)
      else this.#local(rule, task).add(tokens, now)
    }
  }

  #refusal (rule: Rule, task: Task, waitMs: number, why: BudgetRefusal['why'], now: number): BudgetRefusal {
    const key = keyOf(rule, task)
    rule.exhausted++
    const first = now >= (rule.flagged.get(key) ?? -Infinity)
    if (first) {
      rule.flagged.set(key, now + rule.config.per)
      if (rule.flagged.size > MAX_TASKS) rule.flagged.delete(rule.flagged.keys().next().value!)
    }
    return { budget: rule.label, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)), first, why }
  }

  /** A `by: fleet` budget counted by the fleet (without a ledger, it is counted here). */
  #fleet (rule: Rule): boolean {
    return rule.config.by === 'fleet' && this.#ledger !== undefined
  }

  /** The local window of `rule` for this call (a fleet budget's, too: the count it falls back to). */
  #local (rule: Rule, task: string | undefined): SlidingWindow {
    return rule.window(keyOf(rule, task))
  }
}

/**
 * What an admitted call owes its token budgets: the answer's bytes pass `observe` on their way to the agent, and
 * `settle` counts the usage once the answer has ended (or stopped: what was relayed was spent).
 */
export class BudgetCharge {
  readonly #budgets: Budgets
  readonly #rules: readonly Rule[]
  readonly #task: string | undefined
  readonly #usage = new UsageScanner()
  #settled = false

  constructor (budgets: Budgets, rules: readonly Rule[], task: string | undefined) {
    this.#budgets = budgets
    this.#rules = rules
    this.#task = task
  }

  readonly observe = (chunk: Buffer): void => { this.#usage.push(chunk) }

  /**
   * Counts the answer's tokens once: its reported usage; with none, a success answer costs its bytes' estimate and
   * an error answer (or no answer) nothing.
   */
  settle (status: number | undefined): void {
    if (this.#settled) return
    this.#settled = true
    const ok = status !== undefined && status >= 200 && status < 300
    this.#budgets.spend(this.#rules, this.#task, ok ? this.#usage.tokens() : this.#usage.reported() ?? 0)
  }
}

function keyOf (rule: Rule, task: string | undefined): string {
  return rule.config.by === 'task' ? task ?? NO_TASK : ''
}
