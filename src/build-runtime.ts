import type { lookup as dnsLookup } from 'node:dns'
import type { Config } from './config/schema.js'
import type { AuditHub } from './audit/hub.js'
import { CredentialManager } from './credentials/manager.js'
import type { LeafCache } from './tls/leaf-cache.js'
import { createLookup, type ResolverOptions } from './net/resolver.js'
import { Router } from './proxy/router.js'
import { createUpstream } from './proxy/upstream/upstream.js'
import type { Runtime } from './proxy/runtime.js'
import { NO_LOCKS, type LockView } from './proxy/lock-view.js'
import { ApprovalDesk } from './approvals/index.js'
import type { Budgets } from './budget/index.js'
import type { Clock } from './util/clock.js'
import type { Tracing } from './tracing/index.js'

export interface RuntimeDeps {
  /** PEM of `upstream_ca_file`, read by preflight. */
  upstreamCa: string | undefined
  clock: Clock
  audit: AuditHub
  leaves: LeafCache
  dns: typeof dnsLookup | undefined
  ownPorts: ReadonlySet<number>
  locks?: LockView
  approvals?: ApprovalDesk
  /** Kept across reloads: a budget whose line is unchanged keeps its count. */
  budgets: Budgets
  previous?: CredentialManager
  tracing?: Tracing | undefined
}

/** A runtime and its credential manager as built: the request path sees only the runtime's narrow interfaces. */
export interface Live {
  readonly runtime: Runtime
  readonly credentials: CredentialManager
}

/** Everything a request needs from one config; a reload builds a new one, carrying over what `deps` hands it. */
export async function buildRuntime (config: Readonly<Config>, deps: RuntimeDeps): Promise<Live> {
  const resolver: ResolverOptions = {
    pins: config.resolve,
    blockPrivate: config.egress.block_private,
    ...(deps.dns === undefined ? {} : { dns: deps.dns }),
  }
  const lookup = createLookup(resolver)
  const router = new Router(config.tools)
  const upstream = createUpstream(config, lookup, router, deps.upstreamCa)
  // Loaded (and its key read or made) only in inventory mode.
  const inventory = config.egress.unmatched === 'inventory'
    ? await (await import('./inventory/index.js')).createInventory(config.ca.dir)
    : undefined
  const credentials = CredentialManager.create(config, {
    clock: deps.clock,
    audit: deps.audit,
    dispatcher: upstream,
    tracing: deps.tracing,
    ...(deps.previous === undefined ? {} : { previous: deps.previous }),
  })
  await credentials.start()
  deps.budgets.configure(config.tools)
  const runtime: Runtime = {
    config,
    router,
    credentials,
    upstream,
    lookup,
    resolver,
    audit: deps.audit,
    leaves: deps.leaves,
    ownPorts: deps.ownPorts,
    locks: deps.locks ?? NO_LOCKS,
    approvals: deps.approvals ?? new ApprovalDesk(deps.audit),
    budgets: deps.budgets,
    ...(deps.tracing === undefined ? {} : { tracing: deps.tracing }),
    ...(inventory === undefined ? {} : { inventory }),
  }
  return { runtime, credentials }
}

/** Lets a replaced runtime's requests finish, then frees its pools and timers. */
export async function retire (rt: Runtime, credentials: CredentialManager): Promise<void> {
  await credentials.close()
  await rt.upstream.close().catch(() => {})
}
