/**
 * Response scrubbing: the credential sidekey injected never reaches the agent, however the upstream echoes it (a
 * redirect keeping the query, an error page quoting the key, a debug endpoint, a WebSocket 101). A {@link Scrubber}
 * is built from the *needles* of one injected credential — every spelling of the secret the upstream could send
 * back, each with the placeholder spelled the same way — and rewrites response headers (always) and text bodies
 * (per tool, `scrub_body`) as they stream.
 *
 * The needle list is the one input: an injection shape adds the spellings its secret can take on the wire
 * ({@link tokenNeedles} for a token, {@link basicNeedles} for basic auth); the scrubber knows nothing of shapes.
 */

interface ByteNeedle { readonly bytes: Buffer, readonly with: Buffer }

/** One spelling of a secret and what the agent sees in its place. */
export interface Needle {
  readonly secret: string
  readonly replacement: string
  /** Exactly what sidekey put on the wire (the token, the basic value): looked for in every body, binary ones too. */
  readonly wire?: boolean
}

/**
 * Shortest secret spelling derived from a part of a value (a base64 window, an encoded form): shorter, and
 * ordinary text could match it by chance. The raw secret itself is always a needle.
 */
const MIN_DERIVED = 12

/** One way an encoder writes a whole string: applied to the secret and to the placeholder alike. */
export interface Spelling {
  readonly name: string
  readonly spell: (s: string) => string
}

/**
 * Every whole-string spelling of an echoed secret, in one place: URL encoders (a redirect keeping the query, a link
 * to the next page, a URL carried in another URL's query), JSON writers and HTML escapers. Each entry is one
 * encoder's whole rule; an encoder escaping some other subset of characters writes a spelling not listed here.
 * A secret of letters, digits and `._~-` (a JWT) is spelled the same way by all of them: nothing added to scan.
 */
export const SPELLINGS: readonly Spelling[] = [
  { name: 'encodeURIComponent', spell: encodeURIComponent },
  { name: 'percent-encoded, lower-case hex', spell: (s) => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, lower) },
  { name: 'form (URLSearchParams)', spell: (s) => new URLSearchParams({ v: s }).toString().slice(2) },
  { name: 'percent-encoded twice', spell: (s) => encodeURIComponent(encodeURIComponent(s)) },
  { name: "Python quote() (safe='/')", spell: (s) => pythonQuote(s, '/') },
  { name: 'Python quote_plus()', spell: (s) => pythonQuote(s, ' ').replace(/ /g, '+') },
  { name: 'JSON (JavaScript)', spell: (s) => JSON.stringify(s).slice(1, -1) },
  { name: 'JSON, non-ASCII as \\uxxxx (Python json.dumps)', spell: (s) => jsonEscaping(s, NON_ASCII, false) },
  { name: 'JSON with \\/ (PHP)', spell: (s) => JSON.stringify(s).slice(1, -1).replace(/\//g, '\\/') },
  { name: 'JSON with \\u003c for < > & (Go)', spell: (s) => jsonEscaping(s, /[<>&]/, false) },
  { name: 'JSON with \\u002B for < > & \' " + ` (ASP.NET Core)', spell: (s) => jsonEscaping(s, ASPNET, true) },
  { name: 'JSON as ASP.NET Core escapes it, lower-case hex', spell: (s) => jsonEscaping(s, ASPNET, false) },
  { name: 'JSON with \\uXXXX for every escapable character', spell: (s) => jsonEscaping(s, JSON_ESCAPABLE, true) },
  { name: 'JSON with \\uxxxx for every escapable character', spell: (s) => jsonEscaping(s, JSON_ESCAPABLE, false) },
  { name: 'HTML named references', spell: (s) => s.replace(/[&<>"']/g, (c) => NAMED[c]!) },
  { name: 'HTML hex references (OWASP ESAPI)', spell: (s) => s.replace(HTML_ESCAPED, (c) => `&#x${hex(c)};`) },
  { name: 'HTML hex references, upper case', spell: (s) => s.replace(HTML_ESCAPED, (c) => `&#x${hexUpper(c)};`) },
  { name: 'HTML decimal references', spell: (s) => s.replace(HTML_ESCAPED, (c) => `&#${c.charCodeAt(0)};`) },
]

/**
 * A token as it can come back: raw; in every {@link SPELLINGS} entry; and inside longer base64 or base64url text at
 * each of the 3 byte alignments (the characters that depend only on the token's bytes, so
 * `base64(anything + token + anything)` contains one of them). Replacements spell the placeholder the same way;
 * inside base64 the placeholder is written as it is.
 *
 * Every spelling is at least as long as the token (a base64 window shorter than the token is under MIN_DERIVED
 * and left out): scrubberFor relies on it to skip short header strings without building the spellings.
 */
export function tokenNeedles (token: string, placeholder: string): Needle[] {
  const out: Needle[] = [{ secret: token, replacement: placeholder, wire: true }]
  for (const { spell } of SPELLINGS) {
    const secret = spell(token)
    if (secret !== token) out.push({ secret, replacement: spell(placeholder) })
  }
  const bytes = Buffer.from(token)
  for (const align of [0, 1, 2]) {
    const padded = Buffer.concat([Buffer.alloc(align), bytes])
    // Characters carrying any of the `align` prefix bytes, and the last partial group, depend on the neighbours.
    const from = Math.ceil(align * 8 / 6)
    const to = Math.floor(padded.length * 8 / 6)
    for (const alphabet of ['base64', 'base64url'] as const) {
      const window = padded.toString(alphabet).slice(from, to)
      if (window.length >= MIN_DERIVED) out.push({ secret: window, replacement: placeholder })
    }
  }
  return out
}

const NAMED: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const HTML_ESCAPED = /[^A-Za-z0-9,._ -]/g
/** What System.Text.Json's default encoder writes as `\uXXXX` (upper-case hex) besides what JSON must escape. */
const ASPNET = /[<>&'"+`]|[^\x00-\x7f]/
const NON_ASCII = /[^\x00-\x7f]/
/** Every character but letters, digits, space and `._~-`: what some JSON writer may spell as `\uXXXX`. */
const JSON_ESCAPABLE = /[^A-Za-z0-9._~ -]/

function lower (s: string): string {
  return s.toLowerCase()
}

function hex (c: string): string {
  return c.charCodeAt(0).toString(16)
}

function hexUpper (c: string): string {
  return hex(c).toUpperCase()
}

/** JSON string content with the characters `escaped` matches written as `\uXXXX`, the rest as JSON.stringify does. */
function jsonEscaping (s: string, escaped: RegExp, upper: boolean): string {
  let out = ''
  for (const c of s) {
    if (!escaped.test(c)) out += JSON.stringify(c).slice(1, -1)
    else {
      for (let i = 0; i < c.length; i++) {
        const code = c.charCodeAt(i).toString(16).padStart(4, '0')
        out += `\\u${upper ? code.toUpperCase() : code}`
      }
    }
  }
  return out
}

/** Python's `urllib.parse.quote(s, safe)`: UTF-8 bytes but letters, digits, `_.-~` and `safe` as upper-case %XX. */
function pythonQuote (s: string, safe: string): string {
  let out = ''
  for (const byte of Buffer.from(s)) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9_.~-]/.test(c) || safe.includes(c) ? c : `%${hexUpper(c).padStart(2, '0')}`
  }
  return out
}

/**
 * Basic auth: the exact `base64(user:token)` sidekey sent (replaced by the placeholder's), then the token's own
 * needles.
 */
export function basicNeedles (username: string, token: string, placeholder: string): Needle[] {
  const basic = (secret: string): string => Buffer.from(`${username}:${secret}`).toString('base64')
  return [{ secret: basic(token), replacement: basic(placeholder), wire: true }, ...tokenNeedles(token, placeholder)]
}

/**
 * Rewrites every needle of one injected credential. Header strings are searched for all needles at once with one
 * regular expression, skipped when shorter than any needle (most are); body chunks with `Buffer.indexOf` per
 * needle (memchr-fast, where one alternation over a long chunk is not). Longer needles win at a given position, so
 * an exact basic value is replaced whole before the token's base64 window inside it would be. Immutable; shared by
 * every response to the same credential.
 */
export class Scrubber {
  readonly #needles: () => readonly Needle[]
  /** No needle is shorter than this (UTF-16 units): a header string below it is skipped before anything is built. */
  readonly #atLeast: number
  #compiled: Compiled | undefined

  /**
   * `needles`, or a function returning them with `atLeast` a lower bound on their lengths: then nothing is built
   * until a string that long (or a body) is scrubbed. A per-call token gets a new scrubber on every call, and
   * building one (spellings, regular expression, byte needles) cost about 38 µs, as much as signing the token.
   */
  constructor (needles: readonly Needle[] | (() => readonly Needle[]), atLeast = 0) {
    this.#needles = typeof needles === 'function' ? needles : () => needles
    this.#atLeast = atLeast
  }

  /** Bytes a body scrubber holds back between chunks: a needle split across chunks is still whole in the window. */
  get window (): number {
    return this.#compile().window
  }

  #compile (): Compiled {
    this.#compiled ??= compile(this.#needles())
    return this.#compiled
  }

  /** `value` with every needle replaced; the same string when none occurs. */
  text (value: string): string {
    if (value.length < this.#atLeast) return value
    const c = this.#compile()
    if (value.length < c.shortest) return value
    c.text.lastIndex = 0
    if (!c.text.test(value)) return value
    return value.replace(c.text, (found) => c.replacement.get(found)!)
  }

  /**
   * Rewrites a flat [name, value, ...] header list in place; returns the (lower-cased) names of the fields that
   * held a needle, or undefined when none did.
   */
  headers (flat: string[]): string[] | undefined {
    let echoed: string[] | undefined
    for (let i = 0; i < flat.length; i += 2) {
      const name = this.text(flat[i]!)
      const value = this.text(flat[i + 1]!)
      if (name === flat[i] && value === flat[i + 1]) continue
      flat[i] = name
      flat[i + 1] = value
      const lower = name.toLowerCase()
      if (echoed?.includes(lower) !== true) (echoed ??= []).push(lower)
    }
    return echoed
  }

  /** A scrubber for one streamed body: of text, in UTF-8 (a WebSocket text frame, a body of unknown charset). */
  body (): BodyScrubber
  /** A scrubber for one streamed body of the given kind and encoding (scrub-response.ts reads them off the answer). */
  body (options: BodyOptions): BodyScan
  body (options?: BodyOptions): BodyScan {
    if (options === undefined || options.text === false) return this.#scrubberOf(options === undefined, 'utf-8')
    const encoding = options.encoding
    if (encoding === 'utf-16le' || encoding === 'utf-16be') return this.#scrubberOf(true, encoding)
    // RFC 2781 §4.3: `utf-16` without a byte order mark is big-endian; a body of another charset is UTF-8 unless
    // its byte order mark says UTF-16 (a Windows service writing text out as it holds it in memory).
    return new ByteOrderMarked((bom) => this.#scrubberOf(true, bom ?? (encoding === 'utf-16' ? 'utf-16be' : 'utf-8')))
  }

  #scrubberOf (text: boolean, encoding: BodyEncoding): BodyScrubber {
    const c = this.#compile()
    if (text && encoding === 'utf-8') return new BodyScrubber(c.bytes)
    const key = `${String(text)} ${encoding}`
    let set = c.sets.get(key)
    if (set === undefined) {
      set = new NeedleSet(c.sorted.filter(([secret]) => text || c.wire.has(secret))
        .map(([secret, replacement]) => ({ bytes: encoded(secret, encoding), with: encoded(replacement, encoding) })))
      c.sets.set(key, set)
    }
    return new BodyScrubber(set)
  }
}

/** How a body is searched: a text body for every spelling, any other for what sidekey put on the wire. */
export interface BodyOptions {
  /** Text (`text/*`, JSON, ...): every spelling. Otherwise (images, octet-stream): the wire needles only. */
  readonly text: boolean
  /** The content type's charset, lower case, when it names a UTF-16 form. */
  readonly encoding?: 'utf-16' | 'utf-16le' | 'utf-16be'
}

type BodyEncoding = 'utf-8' | 'utf-16le' | 'utf-16be'

/** What relay() and the audit need of a body scrubber: the bytes to send, and whether a needle was found. */
export interface BodyScan {
  push (chunk: Buffer): Buffer
  end (): Buffer
  /** A whole body in one piece: what `push` then `end` would send, without looking for a tail to hold back. */
  whole? (bytes: Buffer): Buffer
  readonly echoed: boolean
}

function encoded (s: string, encoding: BodyEncoding): Buffer {
  if (encoding === 'utf-8') return Buffer.from(s)
  const le = Buffer.from(s, 'utf16le')
  return encoding === 'utf-16le' ? le : le.swap16()
}

/** Holds a body's first two bytes until its byte order mark (or its absence) picks the scrubber for the rest. */
class ByteOrderMarked implements BodyScan {
  readonly #pick: (bom: BodyEncoding | undefined) => BodyScrubber
  #scrubber: BodyScrubber | undefined
  #first: Buffer = EMPTY

  constructor (pick: (bom: BodyEncoding | undefined) => BodyScrubber) {
    this.#pick = pick
  }

  get echoed (): boolean {
    return this.#scrubber?.echoed === true
  }

  push (chunk: Buffer): Buffer {
    if (this.#scrubber !== undefined) return this.#scrubber.push(chunk)
    const first = this.#first.length === 0 ? chunk : Buffer.concat([this.#first, chunk])
    if (first.length < 2) {
      this.#first = Buffer.from(first)
      return EMPTY
    }
    this.#first = EMPTY
    return (this.#scrubber = this.#pick(byteOrderMark(first))).push(first)
  }

  whole (bytes: Buffer): Buffer {
    if (this.#scrubber !== undefined || this.#first.length > 0) return Buffer.concat([this.push(bytes), this.end()])
    this.#scrubber = this.#pick(bytes.length < 2 ? undefined : byteOrderMark(bytes))
    return this.#scrubber.whole(bytes)
  }

  end (): Buffer {
    const scrubber = this.#scrubber ?? this.#pick(undefined)
    this.#scrubber = scrubber
    const rest = this.#first
    this.#first = EMPTY
    return rest.length === 0 ? scrubber.end() : Buffer.concat([scrubber.push(rest), scrubber.end()])
  }
}

function byteOrderMark (first: Buffer): BodyEncoding | undefined {
  if (first[0] === 0xff && first[1] === 0xfe) return 'utf-16le'
  if (first[0] === 0xfe && first[1] === 0xff) return 'utf-16be'
  return undefined
}

interface Compiled {
  /** Over header strings (the needles as JS strings). */
  readonly text: RegExp
  readonly replacement: ReadonlyMap<string, string>
  /** [secret, replacement], longest first. */
  readonly sorted: ReadonlyArray<readonly [string, string]>
  /** The secrets that are exactly what sidekey put on the wire. */
  readonly wire: ReadonlySet<string>
  /** The needles' UTF-8 bytes for text bodies, longest first. */
  readonly bytes: NeedleSet
  /** Shortest needle in UTF-16 units: a header string shorter than this cannot hold one. */
  readonly shortest: number
  readonly window: number
  /** Byte needles of other bodies (not text, or UTF-16), built on first use. */
  readonly sets: Map<string, NeedleSet>
}

function compile (needles: readonly Needle[]): Compiled {
  const unique = new Map<string, string>()
  const wire = new Set<string>()
  for (const n of needles) {
    if (n.secret === '') continue
    if (!unique.has(n.secret)) unique.set(n.secret, n.replacement)
    if (n.wire === true) wire.add(n.secret)
  }
  const sorted = [...unique].sort((a, b) => b[0].length - a[0].length)
  const bytes = new NeedleSet(sorted.map(([secret, replacement]) =>
    ({ bytes: Buffer.from(secret), with: Buffer.from(replacement) })))
  return {
    text: alternation(sorted.map(([secret]) => secret)),
    replacement: unique,
    sorted,
    wire,
    bytes,
    shortest: sorted.length === 0 ? Infinity : sorted.at(-1)![0].length,
    window: bytes.window,
    sets: new Map(),
  }
}

/** One global RegExp matching any of `literals` (in order of preference); one that never matches for none. */
function alternation (literals: readonly string[]): RegExp {
  if (literals.length === 0) return /(?!)/g
  return new RegExp(literals.map((l) => l.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')).join('|'), 'g')
}

/** Byte needles of one body kind, longest first, with what a body scrubber needs to know how much to hold back. */
class NeedleSet {
  readonly needles: readonly ByteNeedle[]
  /** The longest needle less one byte: the most a body scrubber ever holds back. */
  readonly window: number
  /** The needles starting with each byte value (most bytes start none). */
  readonly #byFirst: ReadonlyArray<readonly ByteNeedle[] | undefined>
  /** 1 for each byte value some needle holds. */
  readonly #inNeedles = new Uint8Array(256)
  /** 1 at (first byte << 8 | second byte) of each needle; undefined when a needle is a single byte. */
  readonly #pairs: Uint8Array | undefined

  constructor (needles: readonly ByteNeedle[]) {
    this.needles = needles
    this.window = Math.max(0, ...needles.map((n) => n.bytes.length - 1))
    const byFirst: Array<ByteNeedle[] | undefined> = new Array<ByteNeedle[] | undefined>(256).fill(undefined)
    for (const n of needles) if (n.bytes.length > 0) (byFirst[n.bytes[0]!] ??= []).push(n)
    this.#byFirst = byFirst
    for (const n of needles) for (const byte of n.bytes) this.#inNeedles[byte] = 1
    if (needles.every((n) => n.bytes.length >= 2)) {
      this.#pairs = new Uint8Array(65536)
      for (const n of needles) this.#pairs[(n.bytes[0]! << 8) | n.bytes[1]!] = 1
    }
  }

  /**
   * Whether a needle could start in `buf` before `limit`. A small chunk (an SSE event, a WebSocket message) is looked
   * over here for the first two bytes of a needle, in one pass: cheaper than a native search per needle. Larger
   * chunks, and needles of one byte, are left to those searches.
   */
  mayStart (buf: Buffer, limit: number): boolean {
    if (buf.length > SMALL_CHUNK || this.#pairs === undefined) return true
    const pairs = this.#pairs
    const end = Math.min(limit, buf.length - 1)
    for (let p = 0; p < end; p++) if (pairs[(buf[p]! << 8) | buf[p + 1]!] === 1) return true
    return false
  }

  /**
   * Where the longest tail of `buf` that could still grow into a needle starts (buf.length: none can). Only that
   * tail is held back for the next chunk: a body whose chunks end between needles (an SSE event's blank line, a
   * JSON document's last brace) is sent whole at once.
   */
  tailFrom (buf: Buffer): number {
    // A last byte no needle holds (an SSE event's newline, a JSON document's brace): nothing can be under way.
    if (buf.length === 0 || this.#inNeedles[buf[buf.length - 1]!] === 0) return buf.length
    for (let p = Math.max(0, buf.length - this.window); p < buf.length; p++) {
      const starting = this.#byFirst[buf[p]!]
      if (starting === undefined) continue
      const k = buf.length - p
      for (const n of starting) if (k < n.bytes.length && startsWith(n.bytes, buf, p)) return p
    }
    return buf.length
  }
}

/**
 * Scrubs one body as it streams. Each chunk is searched together with the tail of the previous one that could
 * still be the start of a needle (at most the window: the longest needle less one byte), held back until the next
 * chunk (or the end): memory is one chunk plus the window, a needle split across chunks is still found, and a chunk
 * that ends where no needle could go on is sent whole. A match that starts before the held-back tail is decided
 * by then: every needle that could start there is either complete or already ruled out.
 */
export class BodyScrubber implements BodyScan {
  readonly #set: NeedleSet
  #held: Buffer = EMPTY
  /** A needle was found (and replaced) in this body. */
  echoed = false

  constructor (set: NeedleSet) {
    this.#set = set
  }

  /** The scrubbed bytes that can be sent now (possibly empty). */
  push (chunk: Buffer): Buffer {
    const buf = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk])
    return this.#scan(buf, this.#set.tailFrom(buf))
  }

  /** What was held back, scrubbed: call once at the end of the body. */
  end (): Buffer {
    const buf = this.#held
    return this.#scan(buf, buf.length)
  }

  whole (bytes: Buffer): Buffer {
    const buf = this.#held.length === 0 ? bytes : Buffer.concat([this.#held, bytes])
    return this.#scan(buf, buf.length)
  }

  /** Sends what lies before `limit` (and any needle starting there), scrubbed; holds back the rest. */
  #scan (buf: Buffer, limit: number): Buffer {
    if (limit <= 0) {
      this.#held = buf
      return EMPTY
    }
    const needles = this.#set.needles
    // Where each needle next occurs at or after `pos` (-1: nowhere before `limit`): each is searched once per chunk
    // unless a replacement skips past its occurrence. A small chunk none could start in is not searched at all.
    const next = this.#set.mayStart(buf, limit) ? needles.map((n) => below(buf.indexOf(n.bytes), limit)) : []
    let out: Buffer[] | undefined
    let pos = 0
    for (;;) {
      let hit = -1
      for (let i = 0; i < needles.length; i++) {
        if (next[i]! >= 0 && next[i]! < pos) next[i] = below(buf.indexOf(needles[i]!.bytes, pos), limit)
        if (next[i]! >= 0 && (hit < 0 || next[i]! < next[hit]!)) hit = i
      }
      if (hit < 0) break
      const at = next[hit]!
      out ??= []
      if (at > pos) out.push(buf.subarray(pos, at))
      out.push(needles[hit]!.with)
      pos = at + needles[hit]!.bytes.length
    }
    const end = Math.max(pos, limit)
    // Copied: the held tail would otherwise pin the whole chunk it was cut from.
    this.#held = end >= buf.length ? EMPTY : Buffer.from(buf.subarray(end))
    if (out === undefined) return end === buf.length ? buf : buf.subarray(0, end)
    this.echoed = true
    if (end > pos) out.push(buf.subarray(pos, end))
    return Buffer.concat(out)
  }
}

/** Whether `buf` from `p` to its end is how `needle` starts: compared here, as most differ in a byte or two. */
function startsWith (needle: Buffer, buf: Buffer, p: number): boolean {
  for (let i = 0; p + i < buf.length; i++) if (buf[p + i] !== needle[i]) return false
  return true
}

/** An occurrence only counts when it starts before `limit`; past it, it is found again in the next chunk. */
function below (index: number, limit: number): number {
  return index < limit ? index : -1
}

const EMPTY = Buffer.alloc(0)
/** A chunk up to this many bytes is looked over for needle starts before any native search. */
const SMALL_CHUNK = 256
