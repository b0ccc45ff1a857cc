import { isCanonicalHost, normalizeHost, parseAuthority } from '../../net/host.js'
import { SidekeyError } from '../../errors.js'
import type { RequestTarget } from './target.js'

/**
 * threat model: the agent, credential scope: the URL authority wins over Host; a Host naming something else is
 * worth an audit field.
 */
export function hostMismatch (hostHeader: string | undefined, target: RequestTarget): boolean {
  if (hostHeader === undefined) return false
  try {
    const a = parseAuthority(hostHeader, target.scheme === 'https' ? 443 : 80)
    return a.host !== target.host || a.port !== target.port
  } catch {
    return true
  }
}

/**
 * An absolute-form request target (RFC 9112 §3.2.2): only http and https, no userinfo (RFC 9110 §4.2.4), and
 * the authority — not the Host header — decides where the request goes. Origin-form is refused: sidekey never
 * routes by Host (threat model: the agent, open proxy and SSRF).
 */
export function absoluteTarget (url: string): RequestTarget {
  const scheme = url.startsWith('http://') ? 'http' : url.startsWith('https://') ? 'https' : undefined
  if (scheme === undefined) {
    const why = url.startsWith('/') ? 'origin-form request to a proxy' : 'unsupported request target'
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', why)
  }
  const fast = canonicalTarget(url, scheme)
  if (fast !== undefined) return fast
  // The authority ends where WHATWG URL ends it for a special scheme; the path after it is kept as the agent wrote
  // it, for net/path.ts (URL would resolve `%2e` and read `\` as `/` on its own terms).
  const start = scheme.length + 3
  const end = url.slice(start).search(/[/?#\\]/)
  const authority = end < 0 ? url.slice(start) : url.slice(start, start + end)
  if (authority.includes('@')) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'userinfo in request target')
  let parsed: URL
  try {
    if (authority === '') throw new Error('empty authority')
    parsed = new URL(`${scheme}://${authority}/`)
  } catch {
    throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'invalid request target')
  }
  const host = normalizeHost(parsed.hostname)
  const port = parsed.port === '' ? (scheme === 'https' ? 443 : 80) : Number(parsed.port)
  const rest = end < 0 ? '' : url.slice(start + end)
  return { scheme, host, port, pathAndQuery: rest.startsWith('/') ? rest : '/' + rest, tunnel: false }
}

/**
 * `scheme://host[:port]/path[?query]` already in the form `new URL()` would give back: canonical host, port 1-65535
 * without leading zeros, a path of RFC 3986 pchars without `%` or dot segments, a non-empty query without the
 * characters URL would percent-encode, no fragment. Anything else takes the URL parser (undefined).
 */
const CANONICAL_TARGET =
  /^https?:\/\/([a-z0-9.-]+)(?::([1-9]\d{0,4}))?(\/[\w\-.~!$&()*+,;=:@/]*)(\?[\w\-.~!$&()*+,;=:@/?%]+)?$/

function canonicalTarget (url: string, scheme: 'http' | 'https'): RequestTarget | undefined {
  const m = CANONICAL_TARGET.exec(url)
  if (m === null) return undefined
  const host = m[1]!
  const path = m[3]!
  if (!isCanonicalHost(host) || path.includes('/.')) return undefined
  const port = m[2] === undefined ? (scheme === 'https' ? 443 : 80) : Number(m[2])
  if (port > 65535) return undefined
  return { scheme, host, port, pathAndQuery: m[4] === undefined ? path : path + m[4], tunnel: false }
}
