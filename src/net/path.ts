import { SidekeyError } from '../errors.js'

/**
 * One path, one route. The request path is put in its RFC 3986 §6.2.2 normal form once, before matching, and that
 * form is what the upstream receives, so sidekey and the upstream read the same path:
 * - percent-encoded unreserved characters (ALPHA / DIGIT / `-` `.` `_` `~`) are decoded, the hex digits of every
 *   other escape are upper-cased (§6.2.2.1, §6.2.2.2);
 * - dot segments are removed after that decoding (§5.2.4), so `%2e%2e` is `..`.
 * Refused (400), because no normal form is safe to forward: a raw `\` (WHATWG URL and many servers read it as
 * `/`), a fragment, control or non-ASCII bytes, a `%` not followed by two hex digits, an escaped control byte, and
 * escapes that are not valid UTF-8 (overlong `%c0%af`, surrogates, ...: decoders that accept them find a `/`).
 * The query string is kept byte for byte (it must only be free of control bytes and `#`).
 *
 * @example
 *   normalizePath('/v1/%73afe/./x/../y?q=%2f') === '/v1/safe/y?q=%2f'
 */
export function normalizePath (pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?')
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q)
  const query = q < 0 ? '' : pathAndQuery.slice(q)
  if (!path.startsWith('/')) throw badPath('the request path must start with /')
  if (UNSAFE_QUERY.test(query)) throw badPath('control bytes or a fragment in the query')
  return removeDotSegments(decodeUnreserved(path, true)) + query
}

/** Control bytes, space, DEL, `#`: never valid in a request target. */
const UNSAFE_QUERY = /[\x00-\x20\x7f#]/
/** What the path may hold besides escapes: printable ASCII except `\` and `#` (and `%`, handled apart). */
const UNSAFE_PATH_CHAR = /[^\x21-\x7e]|[\\#]/
const HEX = /^[0-9A-Fa-f]{2}$/
const UNRESERVED = /[A-Za-z0-9\-._~]/
const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Decodes escaped unreserved characters, upper-cases the others, and checks every escape and character. Not
 * `strict` (a reading of an escape decoded once more), a `%` without two hex digits after it is a plain `%`.
 */
function decodeUnreserved (path: string, strict: boolean): string {
  if (!path.includes('%')) {
    if (UNSAFE_PATH_CHAR.test(path)) throw unsafeChar()
    return path
  }
  let out = ''
  let high: number[] = []
  let i = 0
  const flushUtf8 = (): void => {
    if (high.length === 0) return
    // Overlong forms, surrogates and truncated sequences all fail a fatal decoder.
    try { utf8.decode(Uint8Array.from(high)) } catch { throw badPath('a percent-encoded sequence is not valid UTF-8') }
    high = []
  }
  while (i < path.length) {
    const c = path[i]!
    if (c !== '%') {
      flushUtf8()
      if (UNSAFE_PATH_CHAR.test(c)) throw unsafeChar()
      out += c
      i++
      continue
    }
    const hex = path.slice(i + 1, i + 3)
    if (!HEX.test(hex)) {
      if (strict) throw badPath('a % in the path is not followed by two hex digits')
      flushUtf8()
      out += c
      i++
      continue
    }
    const byte = parseInt(hex, 16)
    i += 3
    if (byte >= 0x80) {
      high.push(byte)
      out += '%' + hex.toUpperCase()
      continue
    }
    flushUtf8()
    if (byte < 0x20 || byte === 0x7f) throw badPath('an escaped control byte in the path')
    const ch = String.fromCharCode(byte)
    out += UNRESERVED.test(ch) ? ch : '%' + hex.toUpperCase()
  }
  flushUtf8()
  return out
}

/** RFC 3986 §5.2.4 on an absolute path: `.` segments go, `..` takes the segment before it; empty segments stay. */
export function removeDotSegments (path: string): string {
  if (!path.includes('/.')) return path
  const input = path.split('/')
  const out: string[] = []
  for (let i = 1; i < input.length; i++) {
    const segment = input[i]!
    if (segment === '.' || segment === '..') {
      if (segment === '..') out.pop()
      if (i === input.length - 1) out.push('')
    } else {
      out.push(segment)
    }
  }
  return '/' + out.join('/')
}

/** A way an upstream may read a normalised path, and the path it reads (undefined: it has no normal form). */
export interface Reading {
  readonly how: string
  readonly path: string | undefined
}

/**
 * The other ways an upstream may read a normalised path, each brought back to normal form: escapes decoded once
 * more (`%252e` is `.`, repeated while `%25` remains), `%2F` and `%5C` taken as `/` (or `%5C` as a `\` inside a
 * segment) and `%3B` as `;`, `;params` dropped from segments (servlet containers), empty segments merged (nginx's
 * `merge_slashes`), and every combination of these, in that order, before dot segments are removed. Case-folding
 * is the router's: it reads the prefixes, not the path. None when nothing in the path can be read another way.
 */
export function readingsOf (path: string): Reading[] {
  if (!REREADS.some((w) => w.applies(path))) return []
  const readings: Reading[] = []
  const seen = new Set<string>()
  for (let subset = 1; subset < 1 << REREADS.length; subset++) {
    const ways = REREADS.filter((_, i) => (subset & (1 << i)) !== 0)
    const how = ways.map((w) => w.how).join(', ')
    let read: string | undefined
    try { read = removeDotSegments(ways.reduce((p, w) => w.reread(p), path)) } catch { read = undefined }
    if (read === path || (read !== undefined && seen.has(read))) continue
    if (read !== undefined) seen.add(read)
    readings.push({ how, path: read })
  }
  return readings
}

interface Reread {
  readonly how: string
  applies (path: string): boolean
  reread (path: string): string
}

const withoutParams: Reread = {
  how: 'without ;parameters', applies: (p) => p.includes(';'), reread: (p) => p.replace(/;[^/]*/g, ''),
}

const REREADS: readonly Reread[] = [
  { how: 'decoded once more', applies: (p) => p.includes('%25'), reread: decodedAgain },
  // Servlet containers drop `;params` before decoding, so a `%3B` segment outlives them as `;`; others after.
  withoutParams,
  {
    how: 'with %2F or %5C read as / (and %3B as ;)',
    applies: (p) => /%2F|%5C|%3B/.test(p),
    reread: (p) => p.replace(/%2F|%5C/g, '/').replaceAll('%3B', ';'),
  },
  // A POSIX-style decoder (servlet, nginx) reads %5C as a backslash inside a segment, which a later `..` removes.
  {
    how: 'with %2F read as /, %5C as \\ (and %3B as ;)',
    applies: (p) => p.includes('%5C'),
    reread: (p) => p.replaceAll('%2F', '/').replaceAll('%5C', '\\').replaceAll('%3B', ';'),
  },
  withoutParams,
  { how: 'with empty segments merged', applies: (p) => p.includes('//'), reread: (p) => p.replace(/\/{2,}/g, '/') },
]

/** `%25XX` read as `%XX` (an unreserved one decoded), until no `%25` is left: each round shortens the path. */
function decodedAgain (path: string): string {
  let p = path
  while (p.includes('%25')) p = decodeUnreserved(p.replaceAll('%25', '%'), false)
  return p
}

function unsafeChar (): SidekeyError {
  return badPath('a backslash, fragment, control or non-ASCII byte in the path')
}

function badPath (message: string): SidekeyError {
  return new SidekeyError('SIDEKEY_BAD_REQUEST', message)
}
