import type { LookupFunction } from 'node:net'
import type { Dispatcher } from 'undici'
import type { Config } from '../config/schema.js'
import type { CredentialProvider } from '../credentials/provider.js'
import type { AuditSink } from '../audit/events.js'
import type { LeafCache } from '../tls/leaf-cache.js'
import { checkAddress, type ResolverOptions } from '../net/resolver.js'
import { egressDenied } from '../errors.js'
import { isBlockedIp } from '../net/ip.js'
import type { Router } from './router.js'
import type { Inventory } from '../inventory/index.js'
import type { LockView } from './lock-view.js'
import type { ApprovalDesk } from '../approvals/index.js'
import type { Tracing } from '../tracing/index.js'
import type { Budgets } from '../budget/index.js'

/**
 * Everything a request needs, built by app.ts from one config and swapped whole on reload: a request in flight
 * keeps the runtime it started with.
 */
export interface Runtime {
  readonly config: Readonly<Config>
  readonly router: Router
  readonly credentials: CredentialProvider
  readonly upstream: Dispatcher
  readonly lookup: LookupFunction
  readonly resolver: ResolverOptions
  readonly audit: AuditSink
  readonly leaves: LeafCache
  /** The proxy's and admin's own bound ports: never a destination (threat model: the agent, open proxy and SSRF). */
  readonly ownPorts: ReadonlySet<number>
  /** With `egress.unmatched: inventory`: where unmatched calls carry credentials. */
  readonly inventory?: Inventory
  /** Tools locked by fleet control: refused with 403 tool_locked before any credential is used. */
  readonly locks: LockView
  /** Calls held for approval (src/approvals/): one desk per sidecar, kept across reloads. */
  readonly approvals: ApprovalDesk
  /** With `tracing:`: spans for each request (absent: tracing is off). */
  readonly tracing?: Tracing
  /** Tools' `budget:` counts; they outlive reloads (app.ts keeps one and reconfigures it). */
  readonly budgets?: Budgets
}

/**
 * The ports CONNECT may reach (threat model: the agent, open proxy and SSRF): `egress.connect_ports` and the ports
 * tools name.
 */
export function connectPortAllowed (rt: Runtime, port: number): boolean {
  return rt.config.egress.connect_ports.includes(port) || rt.router.ports.has(port)
}

/**
 * Checks a pass-through destination (absolute-form or blind CONNECT to what no tool matches) before any dial. A
 * name pinned in `resolve:` is trusted with a private address only on the ports of the tools that use it: the pin
 * was written for those tools, not to open the rest of that address to the agent.
 */
export function checkPassThrough (rt: Runtime, host: string, port: number): void {
  const pinned = rt.resolver.pins[host]
  if (pinned !== undefined && rt.resolver.blockPrivate && isBlockedIp(pinned) &&
    !rt.router.candidates(host).some((t) => t.port === port)) {
    throw egressDenied(`${host} is pinned to a private address, on a port no tool of that name uses`, 'private_address')
  }
  checkAddress(host, rt.resolver)
}
