import { isIPv4 } from 'node:net'
import { ipFamily } from '../net/family.js'
import { classifyIp } from '../net/ip.js'
import { normalizeHost } from '../net/host.js'

/** Why an address is not a public one; undefined for a public address. */
export type AddressKind = 'unspecified' | 'loopback' | 'private' | 'link-local' | 'metadata' | 'reserved'

const METADATA = new Set(['169.254.169.254', '100.100.100.200', 'fd00:ec2::254']) // AWS/GCP/Azure, Alibaba, AWS IPv6

/**
 * Classifies an IP literal (v4, v6, v4-mapped v6) for config messages, on top of the proxy's own classifier
 * (net/ip.ts) so that config checks and egress checks never disagree about what is private.
 *
 * @example createAddressClassifier()('169.254.169.254') // → 'metadata'
 */
export function createAddressClassifier (): (ip: string) => AddressKind | undefined {
  return (ip) => {
    if (ipFamily(ip) === 0) return undefined
    if (METADATA.has(ip.toLowerCase())) return 'metadata'
    const cls = classifyIp(ip)
    switch (cls) {
      case 'public': return undefined
      case 'cgnat': return 'private'
      case 'multicast': return 'reserved'
      default: return cls
    }
  }
}

/**
 * Whether `host` (normalised: lower case, no trailing dot, IPv6 without brackets) is this machine for certain,
 * the only place a credential may travel in clear: a loopback IP literal, or a name pinned in `resolve:` to a
 * loopback address. An unpinned name, `localhost` included, is not: the resolver refuses to dial it to a loopback
 * address while `egress.block_private` is on, so it could only work by pinning it anyway.
 *
 * @example isLoopbackHost('idp.test', new Map([['idp.test', '127.0.0.1']])) // → true
 */
export function isLoopbackHost (host: string, pins: ReadonlyMap<string, string>): boolean {
  const address = ipFamily(host) !== 0 ? host : pins.get(host)
  return address !== undefined && classifyIp(address) === 'loopback'
}

/** A tool host as written in `match.host`, checked and normalised. */
export type ToolHost =
  | { readonly ok: true, readonly kind: 'name' | 'wildcard' | 'ip', readonly host: string }
  | { readonly ok: false, readonly reason: string }

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * `api.example.com`, `*.example.com` (any subdomain, at least two labels after the `*.`), or an IP literal
 * (`[::1]` or `::1`). Normalised to lower case, one trailing dot removed, IPv6 compressed and without brackets.
 */
export function parseToolHost (written: string): ToolHost {
  const fail = (reason: string): ToolHost => ({ ok: false, reason })
  if (written.includes('://')) return fail('write the bare host name, without a scheme (e.g. api.example.com)')
  if (written.includes('@')) return fail('a host has no user info')
  if (written.includes('/')) return fail('a host has no path; put it in match.path_prefix')
  const unbracketed = written.startsWith('[') && written.endsWith(']') ? written.slice(1, -1) : written
  // The same canonical form the proxy gives a request's host (IPv6 compressed, lower case), or they never meet.
  if (ipFamily(unbracketed) !== 0) return { ok: true, kind: 'ip', host: normalizeHost(unbracketed) }
  if (written.includes(':')) return fail('a host has no port; put it in match.port')
  let host = written.toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host === '*') return fail('"*" would send this credential to every destination; name the host')
  const wildcard = host.startsWith('*.')
  const name = wildcard ? host.slice(2) : host
  if (name.includes('*')) return fail('only a leading "*." wildcard is supported (e.g. *.example.com)')
  const reason = checkHostName(name)
  if (reason !== undefined) return fail(reason)
  if (wildcard && !name.includes('.')) {
    return fail(`"*.${name}" would match every host under a top-level domain; ` +
      `use at least two labels (e.g. *.example.${name})`)
  }
  return { ok: true, kind: wildcard ? 'wildcard' : 'name', host }
}

/** Undefined when `name` (lower case, no trailing dot) is a usable DNS host name, else why not. */
export function checkHostName (name: string): string | undefined {
  if (name === '' || name.length > 253) return 'not a valid host name'
  const labels = name.split('.')
  if (!labels.every((l) => LABEL.test(l))) return 'not a valid host name (letters, digits, "-" and "." only)'
  // URL parsers read `127.1` or `0x7f.1` as IPv4 addresses, so such a "name" could smuggle in an address.
  const last = labels[labels.length - 1] as string
  if (/^(?:\d+|0x[0-9a-f]*)$/.test(last) && !isIPv4(name)) {
    return 'looks like a partial IP address; write a host name or a full IP address'
  }
  return undefined
}
