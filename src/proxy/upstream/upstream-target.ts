import type { ToolConfig } from '../../config/schema.js'
import { parseToolHost } from '../../config/host.js'
import { ipFamily } from '../../net/family.js'
import { formatAuthority } from '../../net/host.js'

/**
 * A tool's `upstream:`: where its matched traffic is dialled instead of the host and port the agent addressed. The
 * agent keeps its base URL; the Host header, a per-call token's or DPoP proof's URL and a SigV4 signature keep the
 * agent's authority (what a gateway routes by and the real API checks). Only the connection goes elsewhere, through
 * the same checked resolver as any tool host.
 */
export interface UpstreamOverride {
  readonly scheme: 'http' | 'https'
  /** Lower case, no trailing dot, IPv6 without brackets: as the resolver and `resolve:` pins compare it. */
  readonly host: string
  readonly port: number
  /** `https://mock.internal:8443`: what is dialled, one keep-alive pool per origin. */
  readonly origin: string
  /** Sent as SNI and verified in the certificate; undefined over http, or for an IP literal without one set. */
  readonly servername: string | undefined
}

export function upstreamOverride (config: Readonly<ToolConfig>): UpstreamOverride | undefined {
  const u = config.upstream
  if (u === undefined) return undefined
  // Checked by cross-check.ts (a name or a public IP literal); normalised the way a tool host is.
  const parsed = parseToolHost(u.host)
  const host = parsed.ok ? parsed.host : u.host
  const defaultPort = u.scheme === 'https' ? 443 : 80
  const port = u.port ?? defaultPort
  const servername = u.scheme === 'http' ? undefined : u.tls_server_name ?? (ipFamily(host) === 0 ? host : undefined)
  const origin = `${u.scheme}://${formatAuthority(host, port, defaultPort)}`
  return { scheme: u.scheme, host, port, origin, servername }
}

interface NamedTool { readonly name: string, readonly upstream: UpstreamOverride | undefined }

/** /status's `upstream` of each tool that has one: the config's keys, with the defaults they came to. */
export function upstreamStatuses (tools: Iterable<NamedTool>): Record<string, object> {
  const out: Record<string, object> = {}
  for (const { name, upstream: o } of tools) {
    if (o === undefined) continue
    const tls = o.servername === undefined ? {} : { tls_server_name: o.servername }
    out[name] = { scheme: o.scheme, host: o.host, port: o.port, ...tls }
  }
  return out
}

/** A line for `sidekey check`: `tool mock: api.example.com:443 is sent to https://mock.test:8443, TLS name …`. */
export function describeUpstream (name: string, config: Readonly<ToolConfig>): string | undefined {
  const o = upstreamOverride(config)
  if (o === undefined) return undefined
  const matched = formatAuthority(config.match.host, config.match.port ?? 443)
  const tls = o.servername === undefined ? (o.scheme === 'http' ? ', in clear' : '') : `, TLS name ${o.servername}`
  return `tool ${name}: ${matched} is sent to ${o.origin}${tls}`
}

/** Spread into undici's dispatch options. */
export interface Dial { readonly origin: string, readonly servername?: string }

/**
 * What a call routed to a tool dials, given the origin it matched: the tool's `upstream:` under its TLS name, else
 * that origin. Spread into undici's dispatch options (`servername` absent: undici takes the Host header's name).
 */
export function dialOf (upstream: UpstreamOverride | undefined, origin: string): Dial {
  return upstream === undefined ? { origin } : { origin: upstream.origin, servername: upstream.servername }
}
