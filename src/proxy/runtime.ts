import type { LookupFunction } from 'node:net'
import type { Dispatcher } from 'undici'
import type { Config } from '../config/schema.js'
import type { CredentialProvider } from '../credentials/provider.js'
import type { AuditSink } from '../audit/events.js'
import type { LeafCache } from '../tls/leaf-cache.js'
import type { ResolverOptions } from '../net/resolver.js'
import type { Router } from './router.js'

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
  /** The proxy's and admin's own bound ports: never a destination (RELIABILITY B7). */
  readonly ownPorts: ReadonlySet<number>
}

/** The ports CONNECT may reach (RELIABILITY B1): `egress.connect_ports` and the ports tools name. */
export function connectPortAllowed (rt: Runtime, port: number): boolean {
  return rt.config.egress.connect_ports.includes(port) || rt.router.ports.has(port)
}
