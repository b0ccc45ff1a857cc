export { Budgets, BudgetCharge, MAX_TASKS, NO_TASK, type BudgetRefusal, type Verdict } from './budgets.js'
export type { FleetLedger, FleetBudgetSpec, FleetTake } from './ledger.js'
