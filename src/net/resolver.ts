import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { type LookupFunction } from 'node:net'
import { ipFamily } from './family.js'
import { egressDenied } from '../errors.js'
import { isBlockedIp } from './ip.js'
import { isLocalhostName } from './self.js'

export interface ResolverOptions {
  /** `resolve:` pins, host → IP literal. Pinned hosts are trusted: the operator wrote the address. */
  readonly pins: Readonly<Record<string, string>>
  /** Refuse loopback, private, link-local (metadata) and other special addresses for hosts that are not pinned. */
  readonly blockPrivate: boolean
  /** The system resolver by default; tests inject one that maps test names to loopback. */
  readonly dns?: typeof dnsLookup
}

/**
 * A `lookup` for net/tls/undici connects that resolves once, checks every address, and hands the socket only
 * the addresses it checked, so a name cannot rebind between check and connect (threat model: the agent, open proxy
 * and SSRF). IP literals never reach a lookup function in Node, so callers check them with `checkAddress` first.
 */
export function createLookup (opts: ResolverOptions): LookupFunction {
  const dns = opts.dns ?? dnsLookup
  return (hostname, options, callback) => {
    const host = hostname.toLowerCase()
    const pinned = opts.pins[host]
    const all = (options as { all?: boolean }).all === true
    if (pinned !== undefined) {
      const family = ipFamily(pinned)
      if (all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, [{ address: pinned, family }])
      else callback(null, pinned, family)
      return
    }
    dns(hostname, { all: true, family: (options as { family?: number }).family ?? 0 }, (err, addresses) => {
      if (err !== null) { callback(err, '', 0); return }
      if (opts.blockPrivate) {
        const bad = addresses.find((a) => isBlockedIp(a.address))
        if (bad !== undefined || addresses.length === 0) {
          const why = `${hostname} resolves to a private or special address ` +
            '(egress.block_private; pin it in resolve: to allow it)'
          callback(egressDenied(why, 'private_address'), '', 0)
          return
        }
      }
      if (all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses)
      else callback(null, addresses[0]!.address, addresses[0]!.family)
    })
  }
}

/** Checks a destination before any connection: IP literals are not passed to `lookup` by Node. */
export function checkAddress (host: string, opts: ResolverOptions): void {
  if (opts.pins[host] !== undefined || !opts.blockPrivate) return
  const blocked = ipFamily(host) !== 0 ? isBlockedIp(host) : isLocalhostName(host)
  if (blocked) throw egressDenied(`${host} is a private or special address (egress.block_private)`, 'private_address')
}

/** Resolves a host the way a connect would, for callers that must know the address (the self-loop check). */
export function resolveChecked (host: string, lookup: LookupFunction): Promise<string> {
  if (ipFamily(host) !== 0) return Promise.resolve(host)
  return new Promise((resolve, reject) => {
    lookup(host, { all: false }, (err, address) => { if (err !== null) reject(err); else resolve(address as string) })
  })
}
