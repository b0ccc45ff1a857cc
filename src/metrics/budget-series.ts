import { Counter, Gauge, type Registry } from 'prom-client'
import type { BudgetSource } from './sources.js'

/**
 * Tools' budgets (src/budget/): what each has left, and the calls each refused. Declared from the start (empty
 * until budgets are bound), as every other series is; `budgets` reads the bound source at scrape time.
 */
export function declareBudgetSeries (registers: Registry[], budgets: () => BudgetSource | undefined): void {
  new Gauge({
    name: 'sidekey_budget_remaining',
    help: 'Requests or tokens a tool budget has left in its window (by: task, the task closest to its limit)',
    labelNames: ['tool', 'budget'],
    registers,
    collect () {
      this.reset()
      for (const row of budgets()?.remaining() ?? []) this.set({ tool: row.tool, budget: row.budget }, row.value)
    },
  })
  new Counter({
    name: 'sidekey_budget_exhausted_total',
    help: 'Calls refused 429 budget_exhausted, by tool and budget',
    labelNames: ['tool', 'budget'],
    registers,
    collect () {
      this.reset()
      for (const row of budgets()?.exhausted() ?? []) this.inc({ tool: row.tool, budget: row.budget }, row.value)
    },
  })
}
