import type { lookup as dnsLookup } from 'node:dns'
import type { Logger } from 'pino'
import type { Config } from './config/schema.js'
import { loadConfigFile } from './config/load.js'
import { preflight, type Preflight } from './config/preflight.js'
import { CA_COVERAGE_WARNING, caConstraints, uncoveredTools } from './config/ca-coverage.js'
import { AuditHub } from './audit/hub.js'
import { auditChainOf, createLogger, flushLogger } from './audit/log.js'
import { AuditTrail } from './audit/trail/trail.js'
import { createMetrics, type SidekeyMetrics } from './metrics/metrics.js'
import { mcpToolEntries } from './mcp/index.js'
import { anomalyRateLimit, createDetectors } from './anomaly/index.js'
import { CredentialManager } from './credentials/manager.js'
import { loadOrCreateCa, type CertificateAuthority } from './tls/ca.js'
import { LeafCache } from './tls/leaf-cache.js'
import { toolLeafHosts } from './tls/tool-leaf-hosts.js'
import { upstreamStatuses } from './proxy/upstream/upstream-target.js'
import { ProxyListener } from './proxy/ingress/listener.js'
import type { Runtime } from './proxy/runtime.js'
import type { FleetAgent } from './fleet/agent.js'
import { AdminServer } from './admin/server.js'
import { loadOrCreateAdminToken } from './admin/token.js'
import { SidekeyError } from './errors.js'
import { Budgets } from './budget/index.js'
import { systemClock, type Clock } from './util/clock.js'
import { Closers } from './util/closers.js'
import { createTracing } from './tracing/index.js'
import { buildRuntime, retire, type Live } from './build-runtime.js'

/** The version heartbeats report (package.json's, kept in step by a test). */
export const VERSION = '0.1.0'

export interface StartOptions {
  /** The config file; reloads re-read it. */
  readonly configFile?: string
  /** A config already parsed (tests); reload then re-reads `configFile` when given, else keeps this one. */
  readonly config?: Readonly<Config>
  /** `--listen` / `--admin` overrides, `HOST:PORT` (port 0 picks a free port). */
  readonly listen?: string
  readonly admin?: string
  readonly logger?: Logger
  readonly clock?: Clock
  /** Resolver for names that are not pinned (tests map test names to loopback). */
  readonly dns?: typeof dnsLookup
  readonly env?: NodeJS.ProcessEnv
}

/**
 * The composition root: builds every part from one config, owns start, reload and stop. No request logic here.
 */
export class Sidekey {
  readonly logger: Logger
  readonly metrics: SidekeyMetrics
  readonly audit: AuditHub
  readonly ca: CertificateAuthority
  /** The signed trail over the log (undefined when the logger is not chained): its key, checkpoints, fleet hook. */
  readonly trail: AuditTrail | undefined
  readonly #opts: StartOptions
  readonly #leaves: LeafCache
  readonly #proxy: ProxyListener
  readonly #admin: AdminServer
  #runtime: Runtime
  /** The runtime's credential manager, as built (the request path sees it as a CredentialProvider). */
  #manager: CredentialManager
  readonly #closers: Closers
  #tokenDigest: Buffer | undefined
  #proxyAddress = ''
  #adminAddress = ''
  #reloading: Promise<void> | undefined
  #fleet: FleetAgent | undefined
  #uncovered: readonly string[] = []

  private constructor (opts: StartOptions, parts: Parts, live: Live, closers: Closers) {
    const { logger, metrics, audit, ca, leaves, trail } = parts
    this.#opts = opts
    this.#closers = closers
    this.trail = trail
    this.logger = logger
    this.metrics = metrics
    this.audit = audit
    this.ca = ca
    this.#leaves = leaves
    this.#runtime = live.runtime
    this.#manager = live.credentials
    this.#proxy = new ProxyListener(() => this.#runtime)
    this.#admin = new AdminServer({
      credentials: () => this.#runtime.credentials,
      metrics: async () => ({ contentType: this.metrics.contentType, body: await this.metrics.text() }),
      caPem: () => this.ca.certPem,
      auditKeys: () => this.trail?.jwks,
      reload: () => this.reload(),
      tokenDigest: () => this.#tokenDigest,
      audit,
      clock: opts.clock ?? systemClock,
      fleet: () => this.#fleet,
      uncovered: () => this.#uncovered,
      upstreams: () => upstreamStatuses(this.#runtime.router.tools.values()),
      approvals: () => this.#runtime.approvals,
    })
  }

  /**
   * Loads the config, the CA and first credentials, then listens. Never fails because an issuer is down. A config
   * refused for its own faults (preflight) is refused before anything is written: the CA directory stays as it was.
   */
  static async start (opts: StartOptions): Promise<Sidekey> {
    const config = withOverrides(opts.config ?? await loadConfigFile(requireFile(opts), opts.env), opts)
    const files = await preflight(config)
    const logger = opts.logger ?? createLogger({ level: config.log.level })
    const clock = opts.clock ?? systemClock
    const metrics = createMetrics({ tools: Object.keys(config.tools) })
    metrics.mcp.setTools(mcpToolEntries(config.tools))
    const audit = new AuditHub({
      logger,
      metrics,
      instanceId: config.instance_id,
      clock,
      detectors: createDetectors(config.anomaly),
      rateLimit: anomalyRateLimit(config.anomaly),
    })
    // Loaded only when configured, before the first credential fetch so that its refresh has a span.
    const tracing = await createTracing(config.tracing, config.instance_id, VERSION)
    const ca = await loadOrCreateCa({
      dir: config.ca.dir, validityMs: config.ca.validity, clock, ...caConstraints(config),
    })
    const adminToken = await adminTokenOf(config, files)
    // Released in reverse: the logger flushed last, after the trail's final checkpoint, after the "stopped" line.
    const closers = new Closers()
    closers.add(() => flushLogger(logger))
    const chain = auditChainOf(logger)
    // Opened before anything else is logged, so that audit.started is line 1 of the run.
    const trail = chain === undefined
      ? undefined
      : await AuditTrail.open({
        logger, chain, dir: config.ca.dir, instanceId: config.instance_id, every: config.audit.checkpoint_every, clock,
      })
    closers.add(() => trail?.close())
    closers.add(() => { audit.close(); logger.info('stopped') })
    closers.add(() => tracing?.close())
    const leaves = new LeafCache({ ca, validityMs: config.ca.leaf_validity, max: config.ca.leaf_cache_size, clock })
    try {
      const live = await buildRuntime(config, {
        clock,
        audit,
        leaves,
        dns: opts.dns,
        ownPorts: new Set(),
        tracing,
        upstreamCa: files.upstreamCa,
        budgets: new Budgets(clock),
      })
      const app = new Sidekey(opts, { logger, metrics, audit, ca, leaves, trail }, live, closers)
      // The live runtime at shutdown, whichever reload built it.
      closers.add(() => retire(app.#runtime, app.#manager))
      metrics.bindCredentials(live.runtime.credentials)
      metrics.bindCa(ca, clock)
      metrics.bindBudgets(live.runtime.budgets!)
      app.#tokenDigest = adminToken.digest
      await app.#startFleet(config, clock, trail)
      await app.#listen(config)
      app.#fleet?.start()
      logger.info({
        proxy: app.#proxyAddress,
        admin: app.#adminAddress,
        instance_id: config.instance_id,
        ca: ca.certPath,
        ca_origin: ca.origin,
        ca_fingerprint: ca.fingerprint256,
        admin_token: adminToken.path,
        tools: Object.keys(config.tools),
      }, 'listening')
      app.#egressMode(config)
      app.#reportCoverage(config)
      // The tool hosts' leaves, minted in the background: the first CONNECT to a tool then costs what a later one does.
      void leaves.prewarm(toolLeafHosts(config.tools))
      closers.add(() => leaves.stopPrewarm())
      return app
    } catch (err) {
      // A start that fails releases what it built, and still ends its run with a signed checkpoint.
      await closers.close()
      throw err
    }
  }

  /** Fleet control, loaded only when configured: a config without `fleet:` never loads the NATS client. */
  async #startFleet (config: Readonly<Config>, clock: Clock, trail: AuditTrail | undefined): Promise<void> {
    if (config.fleet === undefined) return
    const { FleetAgent } = await import('./fleet/agent.js')
    const fleet = await FleetAgent.create({
      config: { ...config, fleet: config.fleet },
      credentials: () => this.#runtime.credentials,
      audit: this.audit,
      logger: this.logger,
      clock,
      version: VERSION,
      approvals: () => this.#runtime.approvals,
    })
    this.#fleet = fleet
    this.#closers.add(async () => {
      // The bucket gets a checkpoint of everything served (the final one comes after the fleet is closed).
      this.trail?.checkpoint(false)
      await fleet.close()
    })
    // Each signed audit checkpoint is also kept off the node, in the bucket.
    trail?.onCheckpoint((cp) => { fleet.publishCheckpoint(cp) })
    this.#runtime = { ...this.#runtime, locks: fleet }
    this.#runtime.budgets!.useFleet(fleet.budgetLedger())
    this.metrics.bindFleet(fleet)
  }

  /** Binds the proxy and admin listeners; shutdown drains in-flight requests for up to `shutdown_grace`. */
  async #listen (config: Readonly<Config>): Promise<void> {
    this.#closers.add(() => Promise.all([this.#proxy.close(this.#runtime.config.shutdown_grace), this.#admin.close()]))
    let binding = 'proxy'
    let address = config.listen
    try {
      const [proxyHost, proxyPort] = splitHostPort(config.listen)
      const p = await this.#proxy.listen(proxyHost, proxyPort)
      binding = 'admin'
      address = config.admin.listen
      const [adminHost, adminPort] = splitHostPort(config.admin.listen)
      const a = await this.#admin.listen(adminHost, adminPort)
      this.#proxyAddress = hostPort(p.address, p.port)
      this.#adminAddress = hostPort(a.address, a.port)
      this.#runtime = { ...this.#runtime, ownPorts: new Set([p.port, a.port]) }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error'
      const hint = code === 'EADDRINUSE'
        ? ' (another process, or another sidekey, holds it: pick another port with --listen/--admin or the config)'
        : ''
      const why = `cannot listen on ${binding} address ${address}: ${code}${hint}`
      throw new SidekeyError('SIDEKEY_INTERNAL', why, { cause: err })
    }
  }

  /** Tools whose host the CA cannot sign for: warned about, shown in /status and the metric, refused per CONNECT. */
  #reportCoverage (config: Readonly<Config>): void {
    const outside = uncoveredTools(config, this.ca)
    this.#uncovered = outside
    this.metrics.setUncovered(outside)
    if (outside.length > 0) {
      const where = { tools: outside, ca: this.ca.certPath, ca_fingerprint: this.ca.fingerprint256 }
      this.logger.warn(where, CA_COVERAGE_WARNING)
    }
  }

  get proxyAddress (): string { return this.#proxyAddress }
  get adminAddress (): string { return this.#adminAddress }
  get config (): Readonly<Config> { return this.#runtime.config }
  get credentials (): CredentialManager { return this.#manager }
  /** Fleet control, when the config has a `fleet:` section. */
  get fleet (): FleetAgent | undefined { return this.#fleet }
  /** The interception leaves (tests and the bench read which hosts have one). */
  get leaves (): LeafCache { return this.#leaves }

  /**
   * Re-reads the config file and swaps in a new runtime; credentials whose issuer, scopes and audience are
   * unchanged carry over. A bad config throws (ConfigError) and the running one stays in force.
   * Listen addresses and limits of the listeners keep their start-up values.
   */
  reload (): Promise<void> {
    this.#reloading ??= this.#reload().finally(() => { this.#reloading = undefined })
    return this.#reloading
  }

  async #reload (): Promise<void> {
    const old = this.#runtime
    let config: Readonly<Config>
    let next: Live
    let tokenDigest: Buffer
    try {
      config = this.#opts.configFile === undefined
        ? old.config
        : withOverrides(await loadConfigFile(this.#opts.configFile, this.#opts.env), this.#opts)
      // Everything that can refuse the new config comes before buildRuntime, which starts fetching credentials.
      const files = await preflight(config)
      tokenDigest = (await adminTokenOf(config, files)).digest
      const kept = { ...config, listen: old.config.listen, admin: { ...config.admin, listen: old.config.admin.listen } }
      next = await buildRuntime(kept, {
        clock: this.#opts.clock ?? systemClock,
        audit: this.audit,
        leaves: this.#leaves,
        dns: this.#opts.dns,
        ownPorts: old.ownPorts,
        locks: old.locks,
        approvals: old.approvals,
        tracing: old.tracing,
        budgets: old.budgets!,
        previous: this.#manager,
        upstreamCa: files.upstreamCa,
      })
    } catch (err) {
      const e = err as SidekeyError & { problems?: unknown }
      const detail = e.problems === undefined
        ? { message: e instanceof SidekeyError ? e.message : 'reload failed' }
        : { problems: e.problems }
      this.logger.error({ err: { code: e.code ?? 'SIDEKEY_INTERNAL', ...detail } },
        'reload refused: the running config stays in force')
      throw err
    }
    this.#tokenDigest = tokenDigest
    const oldManager = this.#manager
    this.#runtime = next.runtime
    this.#manager = next.credentials
    this.metrics.setTools(Object.keys(config.tools))
    this.metrics.mcp.setTools(mcpToolEntries(config.tools))
    this.metrics.bindCredentials(next.runtime.credentials)
    if (config.egress.unmatched !== old.config.egress.unmatched) this.#egressMode(config)
    this.audit.setDetectors(createDetectors(config.anomaly), anomalyRateLimit(config.anomaly))
    this.trail?.setEvery(config.audit.checkpoint_every)
    this.logger.info({ tools: Object.keys(config.tools) }, 'config reloaded')
    // A reload never replaces the CA: a tool host added since it was made is refused (fails closed) and reported.
    this.#reportCoverage(config)
    void this.#leaves.prewarm(toolLeafHosts(config.tools))
    void retire(old, oldManager)
  }

  /** Shows `egress.unmatched` in the metrics; inventory mode is loud in the log too. */
  #egressMode (config: Readonly<Config>): void {
    this.metrics.setEgressMode(config.egress.unmatched)
    if (config.egress.unmatched !== 'inventory') return
    this.logger.warn({ egress_unmatched: 'inventory', fingerprint_key: this.#runtime.inventory?.keyId },
      'inventory mode: TLS to every destination no tool covers is intercepted and passed through with the ' +
      'agent\'s own credentials, each call audited as egress.inventory; meant for the migration\'s first phase, ' +
      'then switch egress.unmatched to deny')
  }

  /** Stops accepting, drains in-flight requests for up to `shutdown_grace`, then releases everything. */
  async close (): Promise<void> {
    await this.#closers.close()
  }
}

/** What a start builds before the runtime. */
interface Parts {
  readonly logger: Logger
  readonly metrics: SidekeyMetrics
  readonly audit: AuditHub
  readonly ca: CertificateAuthority
  readonly leaves: LeafCache
  readonly trail: AuditTrail | undefined
}

function withOverrides (config: Readonly<Config>, opts: StartOptions): Readonly<Config> {
  if (opts.listen === undefined && opts.admin === undefined) return config
  const admin = Object.freeze({ ...config.admin, listen: opts.admin ?? config.admin.listen })
  return Object.freeze({ ...config, listen: opts.listen ?? config.listen, admin })
}

/**
 * The admin token every admin POST needs: `admin.token_file`'s (read by preflight), else the one sidekey makes (once)
 * beside the CA, where `sidekey admin` finds it too. Only its path is ever logged.
 */
async function adminTokenOf (config: Readonly<Config>, files: Preflight): Promise<{ path: string, digest: Buffer }> {
  if (files.tokenDigest !== undefined && config.admin.token_file !== undefined) {
    return { path: config.admin.token_file, digest: files.tokenDigest }
  }
  return loadOrCreateAdminToken(config.ca.dir)
}

function requireFile (opts: StartOptions): string {
  if (opts.configFile === undefined) throw new SidekeyError('SIDEKEY_CONFIG_INVALID', 'no config file given')
  return opts.configFile
}

export function splitHostPort (value: string): [string, number] {
  const i = value.lastIndexOf(':')
  const host = value.slice(0, i).replace(/^\[|\]$/g, '')
  return [host, Number(value.slice(i + 1))]
}

function hostPort (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
