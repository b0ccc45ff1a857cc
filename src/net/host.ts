import { domainToASCII } from 'node:url'
import { ipFamily } from './family.js'
import { SidekeyError } from '../errors.js'

/**
 * Host names as sidekey compares them (threat model: the agent, credential scope): lowercase, one trailing dot
 * removed, IDNA to ASCII, IPv4 in any encoding (decimal, hex, octal, short forms) rewritten to dotted quad by the
 * WHATWG URL parser, IPv6 compressed, without brackets. Anything else that does not survive that is refused.
 */
export function normalizeHost (raw: string): string {
  // Already canonical (the usual case): what the slow path below would return unchanged, without two URL parses.
  if (isCanonicalHost(raw)) return raw
  let host = raw
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  if (ipFamily(host) === 6) {
    const parsed = parseUrlHost(`[${host}]`)
    return parsed.slice(1, -1)
  }
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host === '' || host.length > 253 || /[\s/\\@?#%:[\]]/.test(host)) throw badHost()
  const parsed = parseUrlHost(host)
  if (parsed.endsWith('.')) throw badHost() // two trailing dots
  const ascii = ipFamily(parsed) === 4 ? parsed : domainToASCII(parsed)
  if (ascii === '' || !/^[a-z0-9.-]+$/.test(ascii) || ascii.startsWith('.') || ascii.includes('..')) throw badHost()
  return ascii
}

/**
 * Lowercase LDH labels whose last label starts with a letter (so WHATWG URL cannot read the name as an IPv4
 * number) and no `xn--` label (punycode must be validated), or a dotted quad without leading zeros.
 */
const CANONICAL_NAME = /^(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*$/
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

export function isCanonicalHost (host: string): boolean {
  return host.length <= 253 && (CANONICAL_NAME.test(host) ? !host.includes('xn--') : CANONICAL_IPV4.test(host))
}

function parseUrlHost (host: string): string {
  let url: URL
  try { url = new URL(`http://${host}/`) } catch { throw badHost() }
  return url.hostname
}

function badHost (): SidekeyError {
  return new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid host')
}

export interface Authority { host: string, port: number }

/**
 * Parses `host:port` (CONNECT's authority-form, or a Host header) into a normalised host and a port.
 * `defaultPort` applies when the port is omitted (not allowed for CONNECT: pass undefined).
 */
export function parseAuthority (raw: string, defaultPort: number | undefined): Authority {
  let host: string
  let portText: string | undefined
  if (raw.startsWith('[')) {
    const end = raw.indexOf(']')
    if (end < 0) throw badHost()
    host = raw.slice(0, end + 1)
    const rest = raw.slice(end + 1)
    if (rest !== '' && !rest.startsWith(':')) throw badHost()
    portText = rest === '' ? undefined : rest.slice(1)
  } else {
    const colon = raw.lastIndexOf(':')
    host = colon < 0 ? raw : raw.slice(0, colon)
    portText = colon < 0 ? undefined : raw.slice(colon + 1)
  }
  let port: number
  if (portText === undefined) {
    if (defaultPort === undefined) throw badHost()
    port = defaultPort
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw badHost()
    port = Number(portText)
    if (port < 1 || port > 65535) throw badHost()
  }
  return { host: normalizeHost(host), port }
}

/** `host:port` for logs and Host headers, bracketing IPv6. */
export function formatAuthority (host: string, port: number, defaultPort?: number): string {
  const h = ipFamily(host) === 6 ? `[${host}]` : host
  return port === defaultPort ? h : `${h}:${port}`
}
