import type { CarriedCredential } from '../audit/events.js'
import { looksLikeSecret, secretKind } from '../secrets/secret-shape.js'
import { SECRET_QUERY_PARAMS } from '../audit/log.js'
import type { FingerprintKey } from './key.js'

/**
 * Where a request carries a credential, for inventory mode: the Authorization header (its scheme, or Basic), other
 * headers named like one (`x-api-key`, `private-token`, …) or holding a value shaped like one, and query parameters
 * likewise. Of each value only its kind (a known prefix, `jwt`, `opaque`) and a keyed fingerprint are kept.
 *
 * @example
 *   carriedCredentials(req.rawHeaders, '/v1/x?key=AIza…', key)
 *   // [{ placement: 'query', name: 'key', kind: 'AIza', fingerprint: 'Xk3…' }]
 */

/** Header names that hold a credential by name. */
const CREDENTIAL_NAME =
  /(?:^|-)(?:api-?key|apikey|key|token|secret|auth|signature|session|password|credential|pat)s?(?:$|-)/
/** Headers that are never a credential (or not the agent's to an API: proxy-authorization is sidekey's own). */
const NOT_CREDENTIAL = new Set([
  'host', 'content-type', 'content-length', 'content-encoding', 'accept', 'accept-encoding', 'accept-language',
  'user-agent', 'connection', 'cookie', 'if-none-match', 'if-match', 'etag', 'referer', 'origin', 'traceparent',
  'tracestate', 'baggage',
  'x-request-id', 'cache-control', 'pragma', 'date', 'proxy-authorization', 'proxy-connection', 'te', 'upgrade',
  'transfer-encoding', 'keep-alive', 'expect', 'range', 'x-amz-content-sha256', 'x-amz-date',
])
/** A request carrying more is recorded up to this many; names from the agent are cut to MAX_NAME. */
const MAX_CARRIED = 8
const MAX_NAME = 64

export function carriedCredentials (
  rawHeaders: readonly string[], pathAndQuery: string, key: FingerprintKey
): CarriedCredential[] {
  const out: CarriedCredential[] = []
  const add: Add = (placement, name, value, kindOf, scheme) => {
    if (out.length >= MAX_CARRIED || value === '') return
    out.push({
      placement,
      name: name.slice(0, MAX_NAME),
      ...(scheme === undefined ? {} : { scheme: scheme.slice(0, MAX_NAME) }),
      kind: secretKind(kindOf),
      fingerprint: key.fingerprint(value),
    })
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase()
    const value = rawHeaders[i + 1]!.trim()
    if (name === 'authorization') authorization(value, add)
    else if (!NOT_CREDENTIAL.has(name) && !name.startsWith(':') &&
      (CREDENTIAL_NAME.test(name) || looksLikeSecret(value))) {
      add('header', name, value, lastToken(value))
    }
  }
  const q = pathAndQuery.indexOf('?')
  if (q === -1) return out
  const hash = pathAndQuery.indexOf('#', q)
  for (const part of pathAndQuery.slice(q + 1, hash === -1 ? undefined : hash).split('&')) {
    const eq = part.indexOf('=')
    if (eq <= 0) continue
    const name = decode(part.slice(0, eq))
    const value = decode(part.slice(eq + 1))
    if (SECRET_QUERY_PARAMS.has(name.toLowerCase()) || looksLikeSecret(value)) add('query', name, value, value)
  }
  return out
}

type Add = (
  placement: CarriedCredential['placement'], name: string, value: string, kindOf: string, scheme?: string
) => void

function authorization (value: string, add: Add): void {
  const space = value.indexOf(' ')
  if (space === -1) { add('authorization', 'authorization', value, value); return }
  const scheme = value.slice(0, space)
  const rest = value.slice(space + 1).trim()
  if (scheme.toLowerCase() !== 'basic') { add('authorization', 'authorization', rest, rest, scheme); return }
  const decoded = Buffer.from(rest, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  // Some APIs put the key in the user name with an empty password (Stripe), most in the password.
  const password = decoded.slice(colon + 1)
  const secret = colon === -1 ? decoded : password === '' ? decoded.slice(0, colon) : password
  add('basic', 'authorization', decoded, secret)
}

function lastToken (value: string): string {
  const space = value.lastIndexOf(' ')
  return space === -1 ? value : value.slice(space + 1)
}

function decode (s: string): string {
  try { return decodeURIComponent(s.replace(/\+/g, ' ')) } catch { return s }
}
