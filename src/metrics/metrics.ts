import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import {
  ADMIN_DENIED_REASONS, TLS_CLIENT_ALERTS, type AnomalyKind, type AuditEvent, type CredentialUsed,
} from '../audit/events.js'
import { systemClock, type Clock } from '../util/clock.js'
import { ApprovalMetrics } from './approvals.js'
import { declareBudgetSeries } from './budget-series.js'
import { FleetMetrics } from './fleet-series.js'
import {
  ANOMALY_KINDS, EGRESS_DENY_REASONS, EGRESS_MODES, METHODS, METHOD_INDEX, OTHER_METHOD, UNMATCHED_TOOL, codeLabel,
  methodLabel, type EgressMode,
} from './labels.js'
import { McpCallMetrics } from './mcp-calls.js'
import { DURATION_BUCKETS, OVERHEAD_BUCKETS, REMOVED_DEFAULT_METRICS } from './series.js'
import { emitSlots, type Slot, type ToolSlots } from './slots.js'
import type { BudgetSource, CaExpirySource, CredentialStatusSource, FleetConnectionSource } from './sources.js'
import { setCaGauge, setCredentialGauge, setReadyGauge } from './status-gauges.js'
import { ToolHistogram } from './tool-histogram.js'

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

export interface MetricsOptions {
  /** Tool names from config: the only values the `tool` label takes besides `_unmatched`. */
  tools: readonly string[]
  /** Register prom-client's default process metrics (default true). */
  defaultMetrics?: boolean
}

const REASON_SET: ReadonlySet<string> = new Set(EGRESS_DENY_REASONS)

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
  readonly #approvals: ApprovalMetrics

  readonly #duration: ToolHistogram
  readonly #overhead: ToolHistogram
  #configured: readonly string[] = []
  #egressMode: EgressMode = 'deny'
  #uncovered: ReadonlySet<string> = new Set()
  #credentials: CredentialStatusSource | undefined
  #ca: { readonly source: CaExpirySource, readonly clock: Clock } | undefined
  #fleet: FleetMetrics | undefined
  #budgets: BudgetSource | undefined

  constructor (opts: MetricsOptions) {
    const registry = this.registry = new Registry()
    const registers = [registry]
    const self = this // prom-client calls collect() with the metric as `this`
    this.#approvals = new ApprovalMetrics(registers)

    new Counter({
      name: 'sidekey_requests_total',
      help: 'Requests proxied (or refused) for a tool, by method and response status (0: no response).',
      labelNames: ['tool', 'method', 'code'],
      registers,
      collect () { emitSlots(this, self.#requestSlots()) },
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
      collect () { setCredentialGauge(this, self.#credentials, 'age_seconds', (t) => self.#toolLabel(t)) },
    })
    new Gauge({
      name: 'sidekey_credential_expires_in_seconds',
      help: 'Seconds until the current credential expires (absent for a credential without expiry).',
      labelNames: ['tool'],
      registers,
      collect () {
        setCredentialGauge(this, self.#credentials, 'expires_in_seconds', (t) => self.#toolLabel(t))
      },
    })
    new Counter({
      name: 'sidekey_credential_refresh_total',
      help: 'Credential fetches by result (success or failure); a shared credential counts for every tool sharing it.',
      labelNames: ['tool', 'result'],
      registers,
      collect () { emitSlots(this, self.#refreshSlots()) },
    })
    new Counter({
      name: 'sidekey_anomalies_total',
      help: 'Anomalies detected, by kind (including those rate-limited out of the log).',
      labelNames: ['kind'],
      registers,
      collect () { emitSlots(this, self.#anomalies.values()) },
    })
    // The documented series has no labels; the breakdown is a second counter, so neither needs a sum to read.
    new Counter({
      name: 'sidekey_egress_denied_total',
      help: 'Destinations refused because no tool matched or egress rules forbid them (one per egress.denied event).',
      registers,
      collect () { emitSlots(this, [self.#egressTotal]) },
    })
    new Counter({
      name: 'sidekey_egress_denied_by_reason_total',
      help: 'sidekey_egress_denied_total broken down by reason (unknown reasons count as other).',
      labelNames: ['reason'],
      registers,
      collect () { emitSlots(this, self.#egress.values()) },
    })
    new Counter({
      name: 'sidekey_tls_client_error_total',
      help: "Agents' failed TLS handshakes with sidekey inside intercepted tunnels, by the alert they sent " +
        "(unknown_ca: the agent does not trust sidekey's CA).",
      labelNames: ['alert'],
      registers,
      collect () { emitSlots(this, self.#tlsClient.values()) },
    })
    new Counter({
      name: 'sidekey_admin_denied_total',
      help: 'Refused writes on the admin port (one per admin.denied event, logged or not), by reason.',
      labelNames: ['reason'],
      registers,
      collect () { emitSlots(this, self.#adminDenied.values()) },
    })
    new Gauge({
      name: 'sidekey_tool_ready',
      help: '1 when the tool holds a valid credential, else 0.',
      labelNames: ['tool'],
      registers,
      collect () { setReadyGauge(this, self.#credentials, self.#configured) },
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
      collect () { setCaGauge(this, self.#ca) },
    })
    new Counter({
      name: 'sidekey_audit_dropped_total',
      help: 'Audit events not fed to the anomaly detectors because their queue was full ' +
        '(the log line was still written).',
      registers,
      collect () { emitSlots(this, [self.#dropped]) },
    })
    new Counter({
      name: 'sidekey_audit_errors_total',
      help: 'Audit events that could not be logged or counted.',
      registers,
      collect () { emitSlots(this, [self.#errors]) },
    })

    for (const kind of ANOMALY_KINDS) this.#anomalies.set(kind, { labels: { kind }, value: 0 })
    for (const reason of EGRESS_DENY_REASONS) this.#egress.set(reason, { labels: { reason }, value: 0 })
    this.#addTool(UNMATCHED_TOOL)
    this.setTools(opts.tools)
    declareBudgetSeries(registers, () => this.#budgets)
    this.mcp = new McpCallMetrics(registers)
    if (opts.defaultMetrics !== false) {
      collectDefaultMetrics({ register: registry })
      for (const name of REMOVED_DEFAULT_METRICS) registry.removeSingleMetric(name)
    }
  }

  get contentType (): string { return this.registry.contentType }

  /** The Prometheus text exposition of every metric. */
  text (): Promise<string> { return this.registry.metrics() }

  /** `egress.unmatched`, shown by sidekey_egress_unmatched_mode; set at start and on reload. */
  setEgressMode (mode: EgressMode): void {
    this.#egressMode = mode
  }

  /**
   * Sets the tools the `tool` label may name (on start and reload). Series of tools dropped from config stay,
   * so their counters do not reset; their gauges disappear with their status.
   */
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
    this.#fleet = new FleetMetrics(this.registry, source)
  }

  /** Tools' budgets (src/budget/): what each has left, and the calls each refused. */
  bindBudgets (source: BudgetSource): void {
    this.#budgets = source
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
        this.#approvals.observe(event)
        break
      case 'fleet.command':
        this.#fleet?.observe(event)
        break
      default: break
    }
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

  #toolLabel (tool: string): string {
    return this.#tools.has(tool) ? tool : UNMATCHED_TOOL
  }
}

export function createMetrics (opts: MetricsOptions): SidekeyMetrics {
  return new SidekeyMetrics(opts)
}
