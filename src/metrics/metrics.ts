import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import {
  ADMIN_DENIED_REASONS, TLS_CLIENT_ALERTS, type AnomalyKind, type AuditEvent, type CredentialUsed,
} from '../audit/events.js'
import type { ApprovalDecided, ApprovalRequested } from '../audit/events.js'
import type { CredentialProvider } from '../credentials/provider.js'
import { systemClock, type Clock } from '../util/clock.js'
import { McpCallMetrics } from './mcp-calls.js'
import { ToolHistogram, type HistogramCells } from './tool-histogram.js'

/**
 * Every sidekey_* metric, declared here and nowhere else, on a registry owned by this instance (two sidekeys in
 * one process must not collide, so never prom-client's global registry).
 *
 * Label values are bounded by construction: tool names come from config (anything else is `_unmatched`), methods
 * fold to a fixed set, codes are status numbers, reasons and kinds are enums. Never a host, path or id.
 *
 * Counters are plain numbers in pre-created slots that the hot path increments after one or two map lookups; the
 * prom-client Counter reads them at scrape time (`collect`). The per-tool histograms of every request are bucket
 * counts of their own (tool-histogram.ts); the others use prom-client Histograms.
 *
 * @example
 *   const metrics = createMetrics({ tools: Object.keys(config.tools) })
 *   metrics.bindCredentials(provider)
 *   metrics.bindCa(ca, clock)
 *   metrics.observe(event)                     // what AuditHub does for every event
 *   res.setHeader('content-type', metrics.contentType); res.end(await metrics.text())
 */

export const UNMATCHED_TOOL = '_unmatched'
export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'OTHER'] as const
export type MethodLabel = typeof METHODS[number]
export const ANOMALY_KINDS: readonly AnomalyKind[] = Object.freeze([
  'unmatched_destination', 'unexpected_credential', 'method_denied', 'new_endpoint', 'rate_spike', 'auth_failures',
  'credential_echoed', 'fleet_command_rejected', 'budget_exhausted',
] as const)
/**
 * The `reason` label of sidekey_egress_denied_by_reason_total. An `egress.denied` event whose reason is not one
 * of these is counted as `other`.
 */
export const EGRESS_DENY_REASONS = [
  'no_tool', 'port', 'private_address', 'self', 'scheme', 'resolve_failed', 'misdirected', 'connect_in_tunnel',
  'ca_constraint', 'bad_request', 'bad_task', 'bad_request_target', 'bad_connect_target', 'headers_too_large', 'other',
] as const

/**
 * prom-client defaults that `promtool check metrics` rejects (gauges named `_total`). Each is the sum of its
 * per-type sibling (`nodejs_active_handles{type}`, ...), which stays, so nothing is lost.
 */
export const REMOVED_DEFAULT_METRICS: readonly string[] = Object.freeze([
  'nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total',
])

/** Seconds; the whole exchange, from a fast loopback answer to a long LLM stream. */
export const DURATION_BUCKETS: readonly number[] =
  Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
/** Seconds; sidekey's own share, expected well under a millisecond. */
export const OVERHEAD_BUCKETS: readonly number[] =
  Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1])

/** Every series name this module declares (the dashboard test checks its queries against it). */
export const METRIC_NAMES: readonly string[] = Object.freeze([
  'sidekey_requests_total',
  'sidekey_request_duration_seconds',
  'sidekey_proxy_overhead_seconds',
  'sidekey_credential_age_seconds',
  'sidekey_credential_expires_in_seconds',
  'sidekey_credential_refresh_total',
  'sidekey_anomalies_total',
  'sidekey_egress_denied_total',
  'sidekey_egress_denied_by_reason_total',
  'sidekey_tool_ready',
  'sidekey_tool_ca_covered',
  'sidekey_tls_client_error_total',
  'sidekey_admin_denied_total',
  'sidekey_tools',
  'sidekey_egress_unmatched_mode',
  'sidekey_ca_expires_in_seconds',
  'sidekey_audit_dropped_total',
  'sidekey_audit_errors_total',
  'sidekey_fleet_connected',
  'sidekey_fleet_watching',
  'sidekey_fleet_commands_total',
  'sidekey_fleet_apply_seconds',
  'sidekey_budget_remaining',
  'sidekey_budget_exhausted_total',
  'sidekey_mcp_calls_total',
])

export const EGRESS_MODES = ['deny', 'tunnel', 'inventory'] as const
export type EgressMode = typeof EGRESS_MODES[number]

/** Seconds from a fleet command's signing (`iat`, whole seconds) to applied here. */
export const FLEET_APPLY_BUCKETS: readonly number[] =
  Object.freeze([0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 600])

/** What the fleet gauges read at scrape time (`watching` absent reads 0: no watcher reports itself running). */
/** Rows of a budget metric: one per tool and budget line. */
export interface BudgetSource {
  remaining (): ReadonlyArray<{ tool: string, budget: string, value: number }>
  exhausted (): ReadonlyArray<{ tool: string, budget: string, value: number }>
}
export interface FleetConnectionSource { readonly connected: boolean, readonly watching?: boolean }

export interface MetricsOptions {
  /** Tool names from config: the only values the `tool` label takes besides `_unmatched`. */
  tools: readonly string[]
  /** Register prom-client's default process metrics (default true). */
  defaultMetrics?: boolean
}

/** What the credential gauges read at scrape time. */
export type CredentialStatusSource = Pick<CredentialProvider, 'status' | 'unready'>

/** What the CA gauge reads at scrape time: the interception CA's end of validity. */
export interface CaExpirySource { readonly notAfter: Date }

interface Slot { readonly labels: Record<string, string | number>, value: number }

interface ToolSlots {
  /** Indexed by METHODS position; each maps a status code to its slot (created on first sight, ≤ 501 codes). */
  readonly requests: Array<Map<number, Slot>>
  readonly duration: HistogramCells
  readonly overhead: HistogramCells
  readonly refreshSuccess: Slot
  readonly refreshFailure: Slot
}

const METHOD_INDEX: ReadonlyMap<string, number> = new Map(METHODS.map((m, i) => [m, i]))
const OTHER_METHOD = METHODS.length - 1
const REASON_SET: ReadonlySet<string> = new Set(EGRESS_DENY_REASONS)
const FLEET_ACTIONS: ReadonlySet<string> = new Set(['lock', 'unlock', 'revoke', 'rotate'])

/** A method as the `method` label: one of METHODS. */
export function methodLabel (method: string): MethodLabel {
  return METHODS[METHOD_INDEX.get(method) ?? OTHER_METHOD]!
}

/** A status as the `code` label: the number when it is a valid HTTP status, else 0 (no response). */
export function codeLabel (status: number): number {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? status : 0
}

export class SidekeyMetrics {
  readonly registry: Registry
  /** MCP tool calls by the `mcp.tools` entry allowing them: app.ts sets the entries on start and reload. */
  readonly mcp: McpCallMetrics
  readonly #tools = new Map<string, ToolSlots>()
  readonly #anomalies = new Map<AnomalyKind, Slot>()
  readonly #egress = new Map<string, Slot>()
  readonly #egressTotal: Slot = { labels: {}, value: 0 }
  readonly #tlsClient = new Map<string, Slot>(
    TLS_CLIENT_ALERTS.map((alert) => [alert, { labels: { alert }, value: 0 }]))

  readonly #adminDenied = new Map<string, Slot>(
    ADMIN_DENIED_REASONS.map((r) => [r, { labels: { reason: r }, value: 0 }]))

  readonly #dropped: Slot = { labels: {}, value: 0 }
  readonly #errors: Slot = { labels: {}, value: 0 }
  readonly #approvals: {
    readonly total: Counter<'tool' | 'result'>, readonly pending: Gauge<'tool'>, readonly wait: Histogram<'tool'>
  }

  readonly #duration: ToolHistogram
  readonly #overhead: ToolHistogram
  #configured: readonly string[] = []
  #egressMode: EgressMode = 'deny'
  #uncovered: ReadonlySet<string> = new Set()
  #credentials: CredentialStatusSource | undefined
  #ca: { readonly source: CaExpirySource, readonly clock: Clock } | undefined
  #fleet: { readonly commands: Counter<'action' | 'result'>, readonly apply: Histogram } | undefined
  #budgets: BudgetSource | undefined

  constructor (opts: MetricsOptions) {
    const registry = this.registry = new Registry()
    const registers = [registry]
    const self = this // prom-client calls collect() with the metric as `this`
    this.#approvals = {
      total: new Counter({
        name: 'sidekey_approvals_total',
        help: 'Held calls decided, by tool and result (granted, denied, expired)',
        labelNames: ['tool', 'result'],
        registers,
      }),
      pending: new Gauge({
        name: 'sidekey_approvals_pending',
        help: 'Calls held now, waiting for an approval',
        labelNames: ['tool'],
        registers,
      }),
      wait: new Histogram({
        name: 'sidekey_approval_wait_seconds',
        help: 'Seconds from a call being held to its decision or timeout',
        labelNames: ['tool'],
        buckets: [1, 5, 15, 30, 60, 120, 300, 900],
        registers,
      }),
    }

    new Counter({
      name: 'sidekey_requests_total',
      help: 'Requests proxied (or refused) for a tool, by method and response status (0: no response).',
      labelNames: ['tool', 'method', 'code'],
      registers,
      collect () { self.#emitSlots(this, self.#requestSlots()) },
    })
    this.#duration = new ToolHistogram({
      name: 'sidekey_request_duration_seconds',
      help: 'The whole proxied exchange as the agent sees it, until the response head (or refusal) was sent.',
      buckets: DURATION_BUCKETS,
      registers,
    })
    this.#overhead = new ToolHistogram({
      name: 'sidekey_proxy_overhead_seconds',
      help: "sidekey's own share of the exchange (matching, stripping, injecting), without upstream time.",
      buckets: OVERHEAD_BUCKETS,
      registers,
    })
    new Gauge({
      name: 'sidekey_credential_age_seconds',
      help: 'Age of the credential the tool currently injects.',
      labelNames: ['tool'],
      registers,
      collect () { self.#credentialGauge(this, 'age_seconds') },
    })
    new Gauge({
      name: 'sidekey_credential_expires_in_seconds',
      help: 'Seconds until the current credential expires (absent for a credential without expiry).',
      labelNames: ['tool'],
      registers,
      collect () { self.#credentialGauge(this, 'expires_in_seconds') },
    })
    new Counter({
      name: 'sidekey_credential_refresh_total',
      help: 'Credential fetches by result (success or failure); a shared credential counts for every tool sharing it.',
      labelNames: ['tool', 'result'],
      registers,
      collect () { self.#emitSlots(this, self.#refreshSlots()) },
    })
    new Counter({
      name: 'sidekey_anomalies_total',
      help: 'Anomalies detected, by kind (including those rate-limited out of the log).',
      labelNames: ['kind'],
      registers,
      collect () { self.#emitSlots(this, self.#anomalies.values()) },
    })
    // The documented series has no labels; the breakdown is a second counter, so neither needs a sum to read.
    new Counter({
      name: 'sidekey_egress_denied_total',
      help: 'Destinations refused because no tool matched or egress rules forbid them (one per egress.denied event).',
      registers,
      collect () { self.#emitSlots(this, [self.#egressTotal]) },
    })
    new Counter({
      name: 'sidekey_egress_denied_by_reason_total',
      help: 'sidekey_egress_denied_total broken down by reason (unknown reasons count as other).',
      labelNames: ['reason'],
      registers,
      collect () { self.#emitSlots(this, self.#egress.values()) },
    })
    new Counter({
      name: 'sidekey_tls_client_error_total',
      help: "Agents' failed TLS handshakes with sidekey inside intercepted tunnels, by the alert they sent " +
        "(unknown_ca: the agent does not trust sidekey's CA).",
      labelNames: ['alert'],
      registers,
      collect () { self.#emitSlots(this, self.#tlsClient.values()) },
    })
    new Counter({
      name: 'sidekey_admin_denied_total',
      help: 'Refused writes on the admin port (one per admin.denied event, logged or not), by reason.',
      labelNames: ['reason'],
      registers,
      collect () { self.#emitSlots(this, self.#adminDenied.values()) },
    })
    new Gauge({
      name: 'sidekey_tool_ready',
      help: '1 when the tool holds a valid credential, else 0.',
      labelNames: ['tool'],
      registers,
      collect () { self.#readyGauge(this) },
    })
    new Gauge({
      name: 'sidekey_tool_ca_covered',
      help: "1 when the interception CA's name constraints cover the tool's host; " +
        '0: CONNECTs to it are refused until sidekey ca --rotate.',
      labelNames: ['tool'],
      registers,
      collect () {
        this.reset()
        for (const tool of self.#configured) this.set({ tool }, self.#uncovered.has(tool) ? 0 : 1)
      },
    })
    new Gauge({
      name: 'sidekey_tools',
      help: 'Number of configured tools.',
      registers,
      collect () { this.set(self.#configured.length) },
    })
    new Gauge({
      name: 'sidekey_egress_unmatched_mode',
      help: 'egress.unmatched in force: 1 for the mode (deny, tunnel or inventory), 0 for the others. ' +
        'inventory intercepts and passes through every destination no tool covers.',
      labelNames: ['mode'],
      registers,
      collect () { for (const mode of EGRESS_MODES) this.set({ mode }, mode === self.#egressMode ? 1 : 0) },
    })
    new Gauge({
      name: 'sidekey_ca_expires_in_seconds',
      help: 'Seconds until the interception CA expires (negative once expired); ' +
        'only a restart of sidekey and the agent renews it.',
      registers,
      collect () { self.#caGauge(this) },
    })
    new Counter({
      name: 'sidekey_audit_dropped_total',
      help: 'Audit events not fed to the anomaly detectors because their queue was full ' +
        '(the log line was still written).',
      registers,
      collect () { self.#emitSlots(this, [self.#dropped]) },
    })
    new Counter({
      name: 'sidekey_audit_errors_total',
      help: 'Audit events that could not be logged or counted.',
      registers,
      collect () { self.#emitSlots(this, [self.#errors]) },
    })

    for (const kind of ANOMALY_KINDS) this.#anomalies.set(kind, { labels: { kind }, value: 0 })
    for (const reason of EGRESS_DENY_REASONS) this.#egress.set(reason, { labels: { reason }, value: 0 })
    this.#addTool(UNMATCHED_TOOL)
    this.setTools(opts.tools)
    this.#declareBudgets(registers)
    this.mcp = new McpCallMetrics(registers)
    if (opts.defaultMetrics !== false) {
      collectDefaultMetrics({ register: registry })
      for (const name of REMOVED_DEFAULT_METRICS) registry.removeSingleMetric(name)
    }
  }

  get contentType (): string { return this.registry.contentType }

  /** The Prometheus text exposition of every metric. */
  text (): Promise<string> { return this.registry.metrics() }

  /**
   * Sets the tools the `tool` label may name (on start and reload). Series of tools dropped from config stay,
   * so their counters do not reset; their gauges disappear with their status.
   */
  /** `egress.unmatched`, shown by sidekey_egress_unmatched_mode; set at start and on reload. */
  setEgressMode (mode: EgressMode): void {
    this.#egressMode = mode
  }

  setTools (tools: readonly string[]): void {
    this.#configured = Object.freeze([...tools])
    for (const tool of tools) this.#addTool(tool)
  }

  /**
   * Tools the CA cannot cover (config/ca-coverage.ts uncoveredTools), on start and reload: sidekey_tool_ca_covered
   * reads it.
   */
  setUncovered (tools: readonly string[]): void {
    this.#uncovered = new Set(tools)
  }

  /** The credential gauges (age, expires_in, ready) read this at scrape time. */
  bindCredentials (provider: CredentialStatusSource): void {
    this.#credentials = provider
  }

  /**
   * The CA gauge reads `notAfter` at scrape time, against `clock` (the one the CA checks leaves with). The CA is
   * renewed only at start, so this gauge is how an operator learns a long-running pod needs a restart.
   */
  bindCa (source: CaExpirySource, clock: Clock = systemClock): void {
    this.#ca = { source, clock }
  }

  /**
   * Registers the fleet series (only sidecars with a `fleet:` section have them, so the disconnection alert never
   * fires for the others): sidekey_fleet_connected (read at scrape time), sidekey_fleet_commands_total{action,result}
   * and sidekey_fleet_apply_seconds (fed by `fleet.command` events).
   */
  bindFleet (source: FleetConnectionSource): void {
    if (this.#fleet !== undefined) return
    const registers = [this.registry]
    new Gauge({
      name: 'sidekey_fleet_connected',
      help: '1 while this sidecar is connected to the fleet broker, else 0',
      registers,
      collect () { this.set(source.connected ? 1 : 0) },
    })
    new Gauge({
      name: 'sidekey_fleet_watching',
      help: '1 while fleet commands reach this sidecar (every stored one applied, new ones arriving), else 0',
      registers,
      collect () { this.set(source.watching === true ? 1 : 0) },
    })
    this.#fleet = {
      commands: new Counter({
        name: 'sidekey_fleet_commands_total',
        help: 'Fleet commands seen, by action and result (applied, failed, rejected, not_addressed)',
        labelNames: ['action', 'result'],
        registers,
      }),
      apply: new Histogram({
        name: 'sidekey_fleet_apply_seconds',
        help: 'Seconds from a fleet command being signed to applied here',
        buckets: [...FLEET_APPLY_BUCKETS],
        registers,
      }),
    }
  }

  /** Tools' budgets (src/budget/): what each has left, and the calls each refused. */
  bindBudgets (source: BudgetSource): void {
    this.#budgets = source
  }

  /** Declared from the start (empty until budgets are bound), as every other series is. */
  #declareBudgets (registers: Registry[]): void {
    const self = this
    new Gauge({
      name: 'sidekey_budget_remaining',
      help: 'Requests or tokens a tool budget has left in its window (by: task, the task closest to its limit)',
      labelNames: ['tool', 'budget'],
      registers,
      collect () {
        this.reset()
        for (const row of self.#budgets?.remaining() ?? []) this.set({ tool: row.tool, budget: row.budget }, row.value)
      },
    })
    new Counter({
      name: 'sidekey_budget_exhausted_total',
      help: 'Calls refused 429 budget_exhausted, by tool and budget',
      labelNames: ['tool', 'budget'],
      registers,
      collect () {
        this.reset()
        for (const row of self.#budgets?.exhausted() ?? []) this.inc({ tool: row.tool, budget: row.budget }, row.value)
      },
    })
  }

  /** Updates the metrics an audit event feeds. Never throws for a well-typed event. */
  observe (event: AuditEvent): void {
    switch (event.event) {
      case 'credential.used': this.#used(event); break
      case 'credential.issued':
        this.#slots(event.tool).refreshSuccess.value++
        for (const t of event.shared_with ?? []) if (t !== event.tool) this.#slots(t).refreshSuccess.value++
        break
      case 'credential.refresh_failed':
        this.#slots(event.tool).refreshFailure.value++
        for (const t of event.shared_with ?? []) if (t !== event.tool) this.#slots(t).refreshFailure.value++
        break
      case 'egress.denied':
        this.#egressTotal.value++
        this.#egress.get(REASON_SET.has(event.reason) ? event.reason : 'other')!.value++
        break
      case 'tls.client_error':
        (this.#tlsClient.get(event.alert) ?? this.#tlsClient.get('other')!).value++
        break
      case 'admin.denied':
        this.#adminDenied.get(event.reason)!.value++
        break
      case 'anomaly': {
        const slot = this.#anomalies.get(event.kind)
        if (slot !== undefined) slot.value++
        break
      }
      case 'approval.requested':
      case 'approval.granted':
      case 'approval.denied':
      case 'approval.expired':
        this.#approval(event)
        break
      case 'fleet.command': {
        const fleet = this.#fleet
        if (fleet === undefined) break
        // A rejected command's action is unverified text: only the four actions become label values.
        const action = event.action !== undefined && FLEET_ACTIONS.has(event.action) ? event.action : 'unknown'
        fleet.commands.inc({ action, result: event.result })
        if (event.result === 'applied' && event.lag_ms !== undefined) fleet.apply.observe(event.lag_ms / 1000)
        break
      }
      default: break
    }
  }

  /** A held call: pending until its first decision or its timeout (a later decision on it is counted, not waited). */
  #approval (event: ApprovalRequested | ApprovalDecided): void {
    const tool = event.tool
    if (event.event === 'approval.requested') {
      this.#approvals.pending.inc({ tool })
      return
    }
    this.#approvals.total.inc({ tool, result: event.event.slice('approval.'.length) })
    if (event.after_timeout === true) return
    this.#approvals.pending.dec({ tool })
    this.#approvals.wait.observe({ tool }, event.wait_ms / 1000)
  }

  /** Counts events the hub dropped from its detector queue. */
  dropped (count = 1): void { this.#dropped.value += count }

  /** Counts an event the hub failed to log or count. */
  error (): void { this.#errors.value++ }

  #used (e: CredentialUsed): void {
    const slots = this.#slots(e.tool)
    const byCode = slots.requests[METHOD_INDEX.get(e.method) ?? OTHER_METHOD]!
    const code = codeLabel(e.status)
    let slot = byCode.get(code)
    if (slot === undefined) {
      const tool = slots === this.#tools.get(e.tool) ? e.tool : UNMATCHED_TOOL
      slot = { labels: { tool, method: methodLabel(e.method), code }, value: 0 }
      byCode.set(code, slot)
    }
    slot.value++
    if (e.duration_ms >= 0) slots.duration.observe(e.duration_ms / 1000)
    if (e.overhead_ms !== undefined && e.overhead_ms >= 0) slots.overhead.observe(e.overhead_ms / 1000)
    if (e.mcp !== undefined) this.mcp.observe(e)
  }

  #slots (tool: string): ToolSlots {
    return this.#tools.get(tool) ?? this.#tools.get(UNMATCHED_TOOL)!
  }

  #addTool (tool: string): void {
    if (this.#tools.has(tool)) return
    this.#tools.set(tool, {
      requests: METHODS.map(() => new Map<number, Slot>()),
      duration: this.#duration.cells(tool),
      overhead: this.#overhead.cells(tool),
      refreshSuccess: { labels: { tool, result: 'success' }, value: 0 },
      refreshFailure: { labels: { tool, result: 'failure' }, value: 0 },
    })
  }

  * #requestSlots (): Iterable<Slot> {
    for (const t of this.#tools.values()) for (const byCode of t.requests) yield * byCode.values()
  }

  * #refreshSlots (): Iterable<Slot> {
    const configured = new Set(this.#configured)
    for (const [name, t] of this.#tools) {
      // Configured tools always show both results (at 0), so rate() and alerts see the first failure.
      if (configured.has(name) || t.refreshSuccess.value > 0 || t.refreshFailure.value > 0) {
        yield t.refreshSuccess
        yield t.refreshFailure
      }
    }
  }

  #emitSlots (counter: Counter<string>, slots: Iterable<Slot>): void {
    counter.reset()
    for (const s of slots) counter.inc(s.labels, s.value)
  }

  #credentialGauge (gauge: Gauge<'tool'>, field: 'age_seconds' | 'expires_in_seconds'): void {
    gauge.reset()
    const status = this.#safeStatus()
    if (status === undefined) return
    for (const [tool, s] of Object.entries(status)) {
      const v = s[field]
      if (typeof v === 'number' && Number.isFinite(v)) gauge.set({ tool: this.#toolLabel(tool) }, v)
    }
  }

  #caGauge (gauge: Gauge): void {
    // An unlabelled gauge resets to 0; with no CA bound there must be no sample rather than "expired".
    gauge.reset()
    const ca = this.#ca
    const left = ca === undefined ? NaN : (ca.source.notAfter.getTime() - ca.clock.now()) / 1000
    if (Number.isFinite(left)) gauge.set(Math.floor(left))
    else gauge.remove({})
  }

  #readyGauge (gauge: Gauge<'tool'>): void {
    gauge.reset()
    const provider = this.#credentials
    if (provider === undefined) return
    let unready: Set<string>
    try { unready = new Set(provider.unready()) } catch { return }
    for (const tool of this.#configured) gauge.set({ tool }, unready.has(tool) ? 0 : 1)
  }

  #safeStatus (): ReturnType<CredentialStatusSource['status']> | undefined {
    try { return this.#credentials?.status() } catch { return undefined }
  }

  #toolLabel (tool: string): string {
    return this.#tools.has(tool) ? tool : UNMATCHED_TOOL
  }
}

export function createMetrics (opts: MetricsOptions): SidekeyMetrics {
  return new SidekeyMetrics(opts)
}
