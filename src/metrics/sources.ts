import type { CredentialProvider } from '../credentials/provider.js'

/** What the scrape-time series read: each bound to SidekeyMetrics after construction. */

/** Rows of a budget metric: one per tool and budget line. */
export interface BudgetSource {
  remaining (): ReadonlyArray<{ tool: string, budget: string, value: number }>
  exhausted (): ReadonlyArray<{ tool: string, budget: string, value: number }>
}
/** What the fleet gauges read at scrape time (`watching` absent reads 0: no watcher reports itself running). */
export interface FleetConnectionSource { readonly connected: boolean, readonly watching?: boolean }

/** What the credential gauges read at scrape time. */
export type CredentialStatusSource = Pick<CredentialProvider, 'status' | 'unready'>

/** What the CA gauge reads at scrape time: the interception CA's end of validity. */
export interface CaExpirySource { readonly notAfter: Date }
