// Property tests for the IP classifier (threat model: the agent, open proxy and SSRF): the class depends on the address, not its spelling.
import t from 'tap'
import fc from 'fast-check'
import { classifyIp, isBlockedIp } from '../../src/net/ip.js'
import { normalizeHost } from '../../src/net/host.js'
import { ipFamily } from '../../src/net/family.js'
import { isIP } from 'node:net'

const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
const hex4 = (n: number): string => `${((n >>> 16) & 0xffff).toString(16)}:${(n & 0xffff).toString(16)}`
const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 })

t.test('an IPv4 address has one class in every encoding, including IPv4-mapped IPv6', async (t) => {
  fc.assert(fc.property(uint32, (n) => {
    const cls = classifyIp(dotted(n))
    const forms = [normalizeHost(String(n)), normalizeHost('0x' + n.toString(16)), normalizeHost('0' + n.toString(8)),
      `::ffff:${dotted(n)}`, `::ffff:${hex4(n)}`, normalizeHost(`[::ffff:${dotted(n)}]`), `0:0:0:0:0:ffff:${hex4(n)}`]
    return forms.every((f) => classifyIp(f) === cls)
  }), { numRuns: 2000 })
  t.pass()
})

t.test('NAT64, 6to4, SIIT and IPv4-compatible wrappers never make a special IPv4 address public', async (t) => {
  fc.assert(fc.property(uint32, (n) => {
    const inner = classifyIp(dotted(n))
    const wrapped = [`64:ff9b::${dotted(n)}`, `64:ff9b::${hex4(n)}`, `2002:${hex4(n)}::1`, `64:ff9b:1::${hex4(n)}`, `::ffff:0:${hex4(n)}`]
    return wrapped.every((w) => inner === 'public' || classifyIp(w) !== 'public')
  }), { numRuns: 2000 })
  t.pass()
})

/** A random address inside `base/prefix`. */
function inside (base: string, prefix: number): fc.Arbitrary<string> {
  const b = base.split('.').reduce((acc, p) => acc * 256 + Number(p), 0)
  const size = 2 ** (32 - prefix)
  return fc.integer({ min: 0, max: size - 1 }).map((off) => dotted(b - (b % size) + off))
}

t.test('every address of every special IPv4 range is blocked, in any encoding', async (t) => {
  const ranges: Array<[string, number]> = [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
    ['172.16.0.0', 12], ['192.168.0.0', 16], ['192.0.2.0', 24], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]]
  for (const [base, prefix] of ranges) {
    fc.assert(fc.property(inside(base, prefix), (a) => {
      const n = a.split('.').reduce((acc, p) => acc * 256 + Number(p), 0)
      return isBlockedIp(a) && isBlockedIp(normalizeHost(String(n))) && isBlockedIp(`::ffff:${a}`) && isBlockedIp(`64:ff9b::${a}`)
    }), { numRuns: 200 })
  }
  t.pass()
})

t.test('IPv6 classes do not depend on how the address is written', async (t) => {
  const special = fc.oneof(
    fc.ipV6(),
    fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 7, maxLength: 7 }).chain((w) =>
      fc.constantFrom('fc', 'fd', 'fe8', 'fe9', 'fea', 'feb', 'ff0').map((p) => `${p}${p.length === 2 ? '00' : '0'}:${w.map((x) => x.toString(16)).join(':')}`))
  )
  fc.assert(fc.property(special, (v6) => {
    const cls = classifyIp(v6)
    const expanded = normalizeHost(v6)
    const first = expanded.startsWith(':') ? 0 : parseInt(expanded.split(':')[0]!, 16)
    const ula = (first & 0xfe00) === 0xfc00
    const linkLocal = (first & 0xffc0) === 0xfe80
    return classifyIp(expanded) === cls && classifyIp(v6.toUpperCase()) === cls && (!(ula || linkLocal) || cls !== 'public')
  }), { numRuns: 2000 })
  t.equal(classifyIp('fd00:ec2::254'), 'private')
  t.equal(classifyIp('::1'), 'loopback')
  t.equal(classifyIp('::'), 'unspecified')
})

t.test('anything that is not an IP literal is never public', async (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 30 }), (s) => classifyIp(s) !== 'public' || /^[0-9a-f:.]+$/i.test(s)), { numRuns: 1000 })
  t.pass()
})

t.test('ipFamily answers as net.isIP does, for addresses and for text that only looks like one', async (t) => {
  const ipText = fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.domain(),
    fc.stringMatching(/^[0-9a-fA-F:.%a-z]{0,40}$/), fc.string())
  fc.assert(fc.property(ipText, (s) => ipFamily(s) === isIP(s)), { numRuns: 5000 })
  for (const s of ['::', '::1', 'fe80::1%eth0', '::ffff:1.2.3.4', '1.2.3.4', '01.2.3.4', 'echo.sidekey.test', '', ':']) t.equal(ipFamily(s), isIP(s), s)
})
