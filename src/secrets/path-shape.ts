import { replacePathSecrets } from './secret-shape.js'

/**
 * The shape of a request path: what `new_endpoint` learns and what anomaly details show instead of the raw path.
 * Id-like segments (numbers, UUIDs, long hex, prefixed ids like `cus_N1x...`, base64-ish tokens and credentials in a
 * known format, such as a bot token in the path) fold to `:id`; the query never takes part.
 * Bounded: at most MAX_SEGMENTS segments of at most MAX_SEGMENT chars.
 *
 * @example
 *   pathShape('/repos/acme/42/issues/9f1c2d3e4b5a6978?x=1') === '/repos/acme/:id/issues/:id'
 */

const MAX_SEGMENTS = 16
const MAX_SEGMENT = 64
const NUMERIC = /^\d+$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const LONG_HEX = /^(?=.*\d)[0-9a-f]{8,}$/i
const PREFIXED_ID = /^[A-Za-z]{1,10}[_-](?=.*\d)[A-Za-z0-9]{8,}$/
const BASE64ISH = /^(?=.*\d)(?=.*[a-z])(?=.*[A-Z])[A-Za-z0-9_\-+=]{16,}$/
const ALNUM_ID = /^(?=(?:[^\d]*\d){2})[A-Za-z0-9]{16,}$/

export function pathShape (path: string): string {
  const q = path.search(/[?#]/)
  const p = q === -1 ? path : path.slice(0, q)
  const segments = replacePathSecrets(p, asId).split('/')
  const out: string[] = []
  for (let i = 0; i < segments.length; i++) {
    if (out.length > MAX_SEGMENTS) { out.push('…'); break }
    out.push(foldSegment(segments[i]!))
  }
  return out.join('/')
}

const DIGIT = /\d/

function foldSegment (s: string): string {
  // Fast path for the common word-like segment (`repos`, `issues`): every id rule needs a digit or 16+ chars.
  if (s === '' || (s.length < 16 && !DIGIT.test(s))) return s
  if (s.length > MAX_SEGMENT || NUMERIC.test(s) || UUID.test(s) || LONG_HEX.test(s) || PREFIXED_ID.test(s) ||
    BASE64ISH.test(s) || ALNUM_ID.test(s)) return ':id'
  return s
}

/** A credential in the path (a bot token, a webhook secret) folds like an id. */
const asId = (): string => ':id'
