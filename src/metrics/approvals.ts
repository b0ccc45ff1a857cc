import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { ApprovalDecided, ApprovalRequested } from '../audit/events.js'

/** Held calls: how many wait now, how each was decided, and how long the decision took. */
export class ApprovalMetrics {
  readonly #total: Counter<'tool' | 'result'>
  readonly #pending: Gauge<'tool'>
  readonly #wait: Histogram<'tool'>

  constructor (registers: Registry[]) {
    this.#total = new Counter({
      name: 'sidekey_approvals_total',
      help: 'Held calls decided, by tool and result (granted, denied, expired)',
      labelNames: ['tool', 'result'],
      registers,
    })
    this.#pending = new Gauge({
      name: 'sidekey_approvals_pending',
      help: 'Calls held now, waiting for an approval',
      labelNames: ['tool'],
      registers,
    })
    this.#wait = new Histogram({
      name: 'sidekey_approval_wait_seconds',
      help: 'Seconds from a call being held to its decision or timeout',
      labelNames: ['tool'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 900],
      registers,
    })
  }

  /** A held call: pending until its first decision or its timeout (a later decision on it is counted, not waited). */
  observe (event: ApprovalRequested | ApprovalDecided): void {
    const tool = event.tool
    if (event.event === 'approval.requested') {
      this.#pending.inc({ tool })
      return
    }
    this.#total.inc({ tool, result: event.event.slice('approval.'.length) })
    if (event.after_timeout === true) return
    this.#pending.dec({ tool })
    this.#wait.observe({ tool }, event.wait_ms / 1000)
  }
}
