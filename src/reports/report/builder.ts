import type { Config } from '../../config/schema.js'
import { parseTime, str, type AuditRecord, type InputCounts } from '../input.js'
import { InventoryUsage, type InventoryReport } from '../inventory-report.js'
import { ScopeUsage, type ScopesReport } from '../scopes.js'
import type { VerifyResult } from '../verify/types.js'
import { AnomalyLog } from './anomalies.js'
import { duration } from './charts.js'
import { Refusals } from './refusals.js'
import { TimeBins } from './time-bins.js'

/** The report's one streaming pass over the audit records: every aggregate bounded, whatever the trail's length. */

const MAX_PENDING = 200_000
const MAX_CREDENTIALS = 2_000_000
const MAX_TASKS = 1000
const MAX_ERRORS = 50

/** Upper edges (seconds) of the credential-age bins; the last bin is open. */
const AGE_EDGES = [
  10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 172_800, 604_800, 2_592_000,
]
export const AGE_LABELS =
  [...AGE_EDGES.map((s) => `≤${duration(s * 1000)}`), `>${duration(AGE_EDGES.at(-1)! * 1000)}`]

export interface AgeAcc { bins: number[], known: number, unknown: number, issued: number }

export interface ReportData {
  input: InputCounts
  first: number
  last: number
  instances: number
  uses: TimeBins
  status: Map<string, number>
  ages: Map<string, AgeAcc>
  anomalies: TimeBins
  anomalyLog: AnomalyLog
  refusals: Refusals
  refreshFailures: TimeBins
  refreshErrors: Map<string, number>
  tasks: Map<string, { calls: number, tools: Set<string>, errors: number }>
  tasksOverflow: number
  scopes: ScopesReport
  inventory: InventoryReport
  verify: VerifyResult | undefined
  /** The trail is still being written (`--live`): the newest run of an instance may end after its last checkpoint. */
  live: boolean
}

export class ReportBuilder {
  readonly uses = new TimeBins()
  readonly anomalies = new TimeBins()
  readonly anomalyLog = new AnomalyLog()
  readonly refusals = new Refusals()
  readonly refreshFailures = new TimeBins()
  readonly status = new Map<string, number>()
  readonly ages = new Map<string, AgeAcc>()
  readonly refreshErrors = new Map<string, number>()
  readonly tasks = new Map<string, { calls: number, tools: Set<string>, errors: number }>()
  readonly scopes: ScopeUsage
  readonly inventory = new InventoryUsage()
  readonly instances = new Set<string>()
  readonly #issuedAt = new Map<string, number>()
  /** Uses seen before their credential's `credential.issued` line (trails merged out of order). */
  readonly #pending = new Map<string, Array<{ tool: string, time: number }>>()
  #pendingCount = 0
  tasksOverflow = 0
  first = Infinity
  last = -Infinity

  constructor (scopes = new ScopeUsage()) { this.scopes = scopes }

  add (rec: AuditRecord): void {
    this.scopes.add(rec)
    this.inventory.add(rec)
    const time = parseTime(rec.time)
    const instance = str(rec.instance_id) ?? '?'
    if (this.instances.size < 10_000) this.instances.add(instance)
    if (time !== undefined) {
      if (time < this.first) this.first = time
      if (time > this.last) this.last = time
    }
    const tool = str(rec.tool) ?? '?'
    this.refusals.add(rec, time)
    switch (rec.event) {
      case 'credential.used': {
        if (time !== undefined) this.uses.add(time, `${tool} @ ${instance}`)
        const code = `${tool} ${typeof rec.status === 'number' ? rec.status : 0}`
        if (this.status.has(code) || this.status.size < 200) this.status.set(code, (this.status.get(code) ?? 0) + 1)
        const cid = str(rec.credential_id)
        if (cid !== undefined && time !== undefined) this.#use(tool, cid, time)
        const task = str(rec.task)
        if (task !== undefined) this.#task(task, tool, typeof rec.status === 'number' && rec.status >= 400)
        break
      }
      case 'credential.issued': {
        this.#age(tool).issued++
        const cid = str(rec.credential_id)
        const at = parseTime(rec.issued_at) ?? time
        if (cid === undefined || at === undefined) break
        const prev = this.#issuedAt.get(cid)
        const room = prev === undefined && this.#issuedAt.size < MAX_CREDENTIALS
        if (room || (prev !== undefined && at < prev)) this.#issuedAt.set(cid, at)
        const waiting = this.#pending.get(cid)
        if (waiting !== undefined) {
          this.#pending.delete(cid)
          this.#pendingCount -= waiting.length
          for (const w of waiting) this.#record(w.tool, w.time - at)
        }
        break
      }
      case 'credential.refresh_failed':
        if (time !== undefined) this.refreshFailures.add(time, tool)
        {
          const code = (str(rec.error) ?? 'unknown').split(/[\s:]/, 1)[0]!.slice(0, 80)
          if (this.refreshErrors.has(code) || this.refreshErrors.size < MAX_ERRORS) {
            this.refreshErrors.set(code, (this.refreshErrors.get(code) ?? 0) + 1)
          }
        }
        break
      case 'anomaly':
        this.anomalyLog.add(rec)
        if (time !== undefined) {
          const n = typeof rec.suppressed === 'number' && rec.suppressed > 0 ? rec.suppressed : 1
          this.anomalies.add(time, str(rec.kind) ?? 'unknown', n)
        }
        break
      default: break
    }
  }

  #use (tool: string, cid: string, time: number): void {
    const at = this.#issuedAt.get(cid)
    if (at !== undefined) { this.#record(tool, time - at); return }
    if (this.#pendingCount >= MAX_PENDING) { this.#age(tool).unknown++; return }
    let list = this.#pending.get(cid)
    if (list === undefined) this.#pending.set(cid, list = [])
    list.push({ tool, time })
    this.#pendingCount++
  }

  #record (tool: string, ageMs: number): void {
    const acc = this.#age(tool)
    const s = Math.max(0, ageMs / 1000)
    let i = AGE_EDGES.findIndex((e) => s <= e)
    if (i === -1) i = AGE_EDGES.length
    acc.bins[i]!++
    acc.known++
  }

  #age (tool: string): AgeAcc {
    let a = this.ages.get(tool)
    if (a === undefined) {
      a = { bins: new Array<number>(AGE_EDGES.length + 1).fill(0), known: 0, unknown: 0, issued: 0 }
      this.ages.set(tool, a)
    }
    return a
  }

  #task (task: string, tool: string, error: boolean): void {
    let t = this.tasks.get(task)
    if (t === undefined) {
      if (this.tasks.size >= MAX_TASKS) { this.tasksOverflow++; return }
      this.tasks.set(task, t = { calls: 0, tools: new Set(), errors: 0 })
    }
    t.calls++
    if (t.tools.size < 20) t.tools.add(tool)
    if (error) t.errors++
  }

  finish (input: InputCounts, config: Readonly<Config> | undefined, verify: VerifyResult | undefined, live = false)
    : ReportData {
    for (const list of this.#pending.values()) for (const w of list) this.#age(w.tool).unknown++
    this.#pending.clear()
    return {
      input,
      first: this.first,
      last: this.last,
      instances: this.instances.size,
      uses: this.uses,
      status: this.status,
      ages: this.ages,
      anomalies: this.anomalies,
      anomalyLog: this.anomalyLog,
      refusals: this.refusals,
      refreshFailures: this.refreshFailures,
      refreshErrors: this.refreshErrors,
      tasks: this.tasks,
      tasksOverflow: this.tasksOverflow,
      scopes: this.scopes.result(config, input),
      inventory: this.inventory.result(input),
      verify,
      live,
    }
  }
}
