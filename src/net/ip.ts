import { BlockList } from 'node:net'
import { ipFamily } from './family.js'

/**
 * Classifies IP addresses for SSRF protection (threat model: the agent, open proxy and SSRF). Callers pass an
 * address that has already been parsed (WHATWG URL or the resolver), never a raw string from the agent: alternate
 * encodings are normalised first.
 */

const V4_SPECIAL: ReadonlyArray<readonly [string, number, IpClass]> = [
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'cgnat'], // includes Alibaba's metadata 100.100.100.200
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'], // cloud metadata 169.254.169.254, ECS 169.254.170.2
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'],
  // Documentation ranges (RFC 5737) are never a real destination; 192.88.99.0/24 is the retired 6to4 relay anycast.
  ['192.0.2.0', 24, 'reserved'],
  ['198.51.100.0', 24, 'reserved'],
  ['203.0.113.0', 24, 'reserved'],
  ['192.88.99.0', 24, 'reserved'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'reserved'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
]

const V6_SPECIAL: ReadonlyArray<readonly [string, number, IpClass]> = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['fc00::', 7, 'private'], // unique-local, includes AWS's fd00:ec2::254
  ['fe80::', 10, 'link-local'],
  ['ff00::', 8, 'multicast'],
  ['100::', 64, 'reserved'],
  ['2001:db8::', 32, 'reserved'],
]

export type IpClass =
  'public' | 'unspecified' | 'private' | 'cgnat' | 'loopback' | 'link-local' | 'reserved' | 'multicast'

const lists = new Map<IpClass, BlockList>()
for (const [net, prefix, cls] of V4_SPECIAL) listFor(cls).addSubnet(net, prefix, 'ipv4')
for (const [net, prefix, cls] of V6_SPECIAL) listFor(cls).addSubnet(net, prefix, 'ipv6')
function listFor (cls: IpClass): BlockList {
  let l = lists.get(cls)
  if (l === undefined) { l = new BlockList(); lists.set(cls, l) }
  return l
}

/**
 * IPv4 embedded in IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible, NAT64
 * (64:ff9b::/96) and 6to4 (2002::/16) addresses.
 */
function embeddedV4 (v6: string): string | undefined {
  const words = expandV6(v6)
  if (words === undefined) return undefined
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  const zero = (from: number, to: number): boolean => words.slice(from, to).every((w) => w === 0)
  if (zero(0, 5) && words[5] === 0xffff) return v4(words[6]!, words[7]!)
  // SIIT IPv4-translated ::ffff:0:0/96 (RFC 2765)
  if (zero(0, 4) && words[4] === 0xffff && words[5] === 0) return v4(words[6]!, words[7]!)
  if (zero(0, 6) && (words[6]! !== 0 || words[7]! > 1)) return v4(words[6]!, words[7]!)
  if (words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6)) return v4(words[6]!, words[7]!)
  // 64:ff9b:1::/48 local NAT64
  if (words[0] === 0x64 && words[1] === 0xff9b && words[2] === 1) return v4(words[6]!, words[7]!)
  if (words[0] === 0x2002) return v4(words[1]!, words[2]!)
  return undefined
}

function expandV6 (addr: string): number[] | undefined {
  let a = addr.toLowerCase()
  const pct = a.indexOf('%')
  if (pct >= 0) a = a.slice(0, pct)
  let tail: number[] = []
  const lastColon = a.lastIndexOf(':')
  if (a.slice(lastColon + 1).includes('.')) {
    const parts = a.slice(lastColon + 1).split('.').map(Number)
    if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) return undefined
    tail = [(parts[0]! << 8) | parts[1]!, (parts[2]! << 8) | parts[3]!]
    a = a.slice(0, lastColon + 1) + '0:0'
  }
  const [head, rest] = a.split('::') as [string, string | undefined]
  const h = head === '' ? [] : head.split(':')
  const r = rest === undefined ? [] : rest === '' ? [] : rest.split(':')
  const fill = 8 - h.length - r.length
  if (rest === undefined && h.length !== 8) return undefined
  const words = [...h, ...Array(rest === undefined ? 0 : fill).fill('0'), ...r].map((w) => parseInt(w, 16))
  if (words.length !== 8 || words.some((w) => !(w >= 0 && w <= 0xffff))) return undefined
  if (tail.length === 2) { words[6] = tail[0]!; words[7] = tail[1]! }
  return words
}

/** Classifies a parsed IP literal (no brackets). Non-IP input is 'reserved' so that it is never treated as public. */
export function classifyIp (address: string): IpClass {
  const family = ipFamily(address)
  if (family === 4) {
    for (const [cls, list] of lists) if (list.check(address, 'ipv4')) return cls
    return 'public'
  }
  if (family === 6) {
    const v4 = embeddedV4(address)
    if (v4 !== undefined) {
      const c = classifyIp(v4)
      // Any embedded special address is special; a NAT64/6to4 wrapper around a public v4 stays public.
      if (c !== 'public') return c
    }
    for (const [cls, list] of lists) if (list.check(address, 'ipv6')) return cls
    return 'public'
  }
  return 'reserved'
}

/** True for every address a forward proxy must not reach on an agent's behalf unless an operator pinned it. */
export function isBlockedIp (address: string): boolean {
  return classifyIp(address) !== 'public'
}
