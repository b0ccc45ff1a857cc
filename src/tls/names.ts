import { ipFamily } from '../net/family.js'
import { SidekeyError } from '../errors.js'
import { ascii, DNS_NAME, EXCLUDED, IP_ADDRESS, PERMITTED, SEQUENCE, tlv, tlvChildren, tlvContents } from './der.js'

/**
 * Host names as the TLS layer sees them: already normalised by the caller (lower case, no port, no brackets),
 * checked here only so that nothing odd can reach a certificate.
 */
const HOST_CHARS = /^[a-z0-9.:-]+$/

/** Throws SIDEKEY_BAD_REQUEST unless `host` is a plain DNS name or an IP literal we can put in a SAN. */
export function assertLeafHost (host: string): void {
  if (host.length === 0 || host.length > 253 || !HOST_CHARS.test(host)) {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid host for a TLS certificate')
  }
  if (host.includes(':') && ipFamily(host) !== 6) {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid IPv6 address for a TLS certificate')
  }
  if (ipFamily(host) === 0 && (host.startsWith('.') || host.endsWith('.') || host.includes('..'))) {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid host for a TLS certificate')
  }
}

/** Network-order bytes of an IP literal (IPv4, IPv6, IPv6 with an IPv4 tail). */
export function ipBytes (ip: string): Uint8Array {
  const family = ipFamily(ip)
  if (family === 4) return new Uint8Array(ip.split('.').map(Number))
  if (family !== 6 || ip.includes('%')) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid IP address')
  let text = ip
  const tail: number[] = []
  const lastColon = text.lastIndexOf(':')
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = text.slice(lastColon + 1).split('.').map(Number)
    tail.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0))
    text = text.slice(0, lastColon + 1) + '0'
  }
  const [head = '', rest] = text.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = rest === undefined || rest === '' ? [] : rest.split(':')
  const fill = rest === undefined ? 0 : 8 - left.length - right.length - (tail.length > 0 ? 1 : 0)
  const groups = [...left, ...Array<string>(fill).fill('0'), ...right].map((g) => parseInt(g, 16))
  if (tail.length > 0) groups.splice(groups.length - 1, 1, ...tail)
  const out = new Uint8Array(16)
  groups.forEach((g, i) => { out[2 * i] = g >> 8; out[2 * i + 1] = g & 0xff })
  return out
}

/**
 * The CA's permitted names in canonical form: lower case, sorted, deduplicated; `*.example.com` becomes
 * `.example.com` (RFC 5280 dNSName constraint for subdomains only); `example.com` also permits its subdomains.
 */
export function normaliseConstraints (names: readonly string[]): string[] {
  const out = new Set<string>()
  for (const raw of names) {
    let name = raw.trim().toLowerCase()
    if (name.startsWith('*.')) name = name.slice(1)
    if (name.startsWith('[') && name.endsWith(']')) name = name.slice(1, -1)
    const bare = name.startsWith('.') ? name.slice(1) : name
    const ok = ipFamily(name) !== 0 || (bare.length > 0 && /^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(bare))
    if (!ok || name.length > 253) {
      const what = JSON.stringify(raw)
      const why = `CA name constraint ${what} is not a host name, *.suffix or IP address`
      throw new SidekeyError('SIDEKEY_CONFIG_INVALID', why)
    }
    out.add(ipFamily(name) === 6 ? ipKey(name) : name)
  }
  return [...out].sort()
}

/** One spelling per IPv6 address (eight full groups), so `::1` and `0::1` count once. */
function ipKey (ip: string): string {
  return ipv6Text(ipBytes(ip))
}

function ipv6Text (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').replace(/(.{4})(?!$)/g, '$1:')
}

/**
 * DER value of an RFC 5280 NameConstraints extension permitting exactly `names` (canonical, from
 * normaliseConstraints). IP addresses are excluded unless some are permitted: a dNSName-only permit list would
 * otherwise leave every IP SAN unconstrained. An empty list permits nothing.
 */
export function encodeNameConstraints (names: readonly string[]): Uint8Array {
  const subtree = (tag: number, value: Uint8Array): Uint8Array => tlv(SEQUENCE, tlv(tag, value))
  const fullMask = (len: number): Uint8Array => new Uint8Array(len).fill(0xff)
  const permitted: Uint8Array[] = []
  for (const name of names) {
    if (ipFamily(name) !== 0) {
      const addr = ipBytes(name)
      permitted.push(subtree(IP_ADDRESS, Uint8Array.from([...addr, ...fullMask(addr.length)])))
    } else {
      permitted.push(subtree(DNS_NAME, ascii(name)))
    }
  }
  const excluded: Uint8Array[] = []
  if (!names.some((n) => ipFamily(n) !== 0)) {
    excluded.push(subtree(IP_ADDRESS, new Uint8Array(8)), subtree(IP_ADDRESS, new Uint8Array(32)))
  }
  // An empty dNSName base matches every name, so excluding it permits no DNS name at all.
  if (permitted.length === 0) excluded.unshift(subtree(DNS_NAME, new Uint8Array(0)))
  const parts: Uint8Array[] = []
  if (permitted.length > 0) parts.push(tlv(PERMITTED, ...permitted))
  if (excluded.length > 0) parts.push(tlv(EXCLUDED, ...excluded))
  return tlv(SEQUENCE, ...parts)
}

/**
 * The permitted names of a NameConstraints extension value, in normaliseConstraints' canonical form: the inverse
 * of encodeNameConstraints, so a loaded CA answers `permits` for what it really covers (not what a config asks).
 * Only the shapes sidekey writes are read (dNSName, and full-mask iPAddress subtrees); a partial IP mask covers
 * nothing here, which errs on the side of refusing.
 */
export function decodeNameConstraints (value: Uint8Array): string[] {
  const names: string[] = []
  for (const part of tlvChildren(value, SEQUENCE)) {
    if (part.tag !== PERMITTED) continue
    for (const subtree of tlvChildren(part.value, PERMITTED)) {
      const base = tlvChildren(subtree.value, SEQUENCE)[0]
      if (base?.tag === DNS_NAME) names.push(Buffer.from(tlvContents(base.value, DNS_NAME)).toString('latin1'))
      if (base?.tag !== IP_ADDRESS) continue
      const bytes = tlvContents(base.value, IP_ADDRESS)
      const half = bytes.length / 2
      if ((half !== 4 && half !== 16) || !bytes.subarray(half).every((b) => b === 0xff)) continue
      const addr = bytes.subarray(0, half)
      names.push(half === 4 ? addr.join('.') : ipv6Text(addr))
    }
  }
  return [...new Set(names)].sort()
}

/** Whether a leaf for `host` would satisfy the constraints (same matching rules as OpenSSL's nc_dns / nc_ip). */
export function permits (names: readonly string[] | undefined, host: string): boolean {
  if (names === undefined) return true
  if (ipFamily(host) !== 0) {
    const want = Buffer.from(ipBytes(host))
    return names.some((n) => ipFamily(n) !== 0 && want.equals(Buffer.from(ipBytes(n))))
  }
  return names.some((n) => n.startsWith('.') ? host.endsWith(n) : host === n || host.endsWith(`.${n}`))
}

/** DER value of a SubjectAltName holding exactly one name: an iPAddress for IP literals, else a dNSName. */
export function encodeSan (host: string): Uint8Array {
  return tlv(SEQUENCE, ipFamily(host) !== 0 ? tlv(IP_ADDRESS, ipBytes(host)) : tlv(DNS_NAME, ascii(host)))
}
