import { networkInterfaces } from 'node:os'
import { ipFamily } from './family.js'
import { classifyIp, isBlockedIp } from './ip.js'

/**
 * threat model: the agent, open proxy and SSRF: sidekey must never be its own destination (loops, admin access).
 * These checks look at the address a destination resolves to, so every spelling of "this machine" is caught:
 * loopback and unspecified in any encoding (the caller parsed them already), and the addresses of the local interfaces.
 */
export function isOwnAddress (address: string): boolean {
  const cls = classifyIp(address)
  if (cls === 'loopback' || cls === 'unspecified') return true
  const plain = address.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '')
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if (i.address.toLowerCase() === plain) return true
  }
  return false
}

/**
 * The check that needs no lookup: an IP literal or `resolve:` pin that is this machine (or any special address)
 * on one of sidekey's own ports, or a `localhost` name (RFC 6761) on one. Names that resolve through DNS are
 * checked on the address actually dialled, by `isOwnAddress`.
 */
export function targetsSelf (
  host: string, port: number, ownPorts: ReadonlySet<number>, pins: Readonly<Record<string, string>>
): boolean {
  if (!ownPorts.has(port)) return false
  const address = pins[host] ?? host
  if (ipFamily(address) !== 0) return isBlockedIp(address) || isOwnAddress(address)
  return isLocalhostName(address)
}

/** `localhost` and `*.localhost` always mean this machine (RFC 6761 §6.3), whatever a resolver says. */
export function isLocalhostName (host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost')
}
