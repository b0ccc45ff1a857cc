// Property tests for the host normaliser (threat model: the agent, credential scope): whatever the spelling, one host compares as one.
import t from 'tap'
import fc from 'fast-check'
import { isIP } from 'node:net'
import { normalizeHost, parseAuthority } from '../../src/net/host.js'
import { SidekeyError } from '../../src/errors.js'

/** The outcome of normalising: the host, or the error code; anything else thrown is a bug. */
function outcome (raw: string): string {
  try {
    return normalizeHost(raw)
  } catch (err) {
    if (err instanceof SidekeyError) return `!${err.code}`
    throw err
  }
}

const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 })

t.test('any input: a clean ASCII host (idempotent) or a SidekeyError, never anything else', async (t) => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (raw) => {
    const r = outcome(raw)
    if (r.startsWith('!')) return r === '!SIDEKEY_BAD_REQUEST'
    if (isIP(r) === 6) return /^[0-9a-f:.]+$/.test(r) && outcome(r) === r
    return /^[a-z0-9.-]+$/.test(r) && !r.startsWith('.') && !r.endsWith('.') && !r.includes('..') && outcome(r) === r
  }), { numRuns: 2000 })
  t.pass()
})

t.test('domains: case and one trailing dot do not matter; two trailing dots or separators inside are refused', async (t) => {
  fc.assert(fc.property(fc.domain(), (d) => {
    const r = outcome(d)
    return outcome(d.toUpperCase()) === r && outcome(d + '.') === r && outcome(d + '..').startsWith('!') &&
      ['/', '@', '%2f', '\\', '#', '?', ' '].every((sep) => outcome(`${d}${sep}evil.test`).startsWith('!') || outcome(`${d}${sep}evil.test`) !== r)
  }), { numRuns: 1000 })
  t.pass()
})

t.test('IPv4 in decimal, hex, octal and dotted-hex forms normalises to the same dotted quad', async (t) => {
  fc.assert(fc.property(uint32, (n) => {
    const quad = dotted(n)
    const parts = quad.split('.').map(Number)
    const forms = [
      String(n),
      '0x' + n.toString(16),
      '0' + n.toString(8),
      parts.map((p) => '0' + p.toString(8)).join('.'),
      parts.map((p) => '0x' + p.toString(16)).join('.'),
      `${parts[0]}.${parts[1]}.${(parts[2]! << 8) + parts[3]!}`,
      `${parts[0]}.${(parts[1]! << 16) + (parts[2]! << 8) + parts[3]!}`,
      quad + '.',
    ]
    return forms.every((f) => outcome(f) === quad)
  }), { numRuns: 1000 })
  t.pass()
})

t.test('IPv6: brackets, case and zero compression do not matter', async (t) => {
  fc.assert(fc.property(fc.ipV6(), (v6) => {
    const r = outcome(v6)
    return isIP(r) === 6 && outcome(`[${v6}]`) === r && outcome(v6.toUpperCase()) === r && outcome(r) === r
  }), { numRuns: 1000 })
  t.pass()
})

t.test('parseAuthority: the port is exact, in range, and never part of the host', async (t) => {
  fc.assert(fc.property(fc.domain(), fc.integer({ min: -5, max: 70_000 }), (d, port) => {
    let a: { host: string, port: number } | undefined
    try { a = parseAuthority(`${d}:${port}`, undefined) } catch { a = undefined }
    const valid = port >= 1 && port <= 65535 && !outcome(d).startsWith('!')
    return valid ? a !== undefined && a.port === port && a.host === outcome(d) : a === undefined
  }), { numRuns: 1000 })
  t.pass()
})
