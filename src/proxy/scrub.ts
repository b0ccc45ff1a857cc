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
}

/**
 * Shortest secret spelling derived from a part of a value (a base64 window, an encoded form): shorter, and
 * ordinary text could match it by chance. The raw secret itself is always a needle.
 */
const MIN_DERIVED = 12

/**
 * A token as it can come back: raw; percent-encoded as `encodeURIComponent` does, with lower-case hex, as a form
 * (`URLSearchParams`) does, and twice (a URL carried in another URL's query); escaped inside JSON or HTML text
 * (TEXT_ESCAPES); and inside longer base64 or base64url text at each of the 3 byte alignments (the
 * characters that depend only on the token's bytes, so `base64(anything + token + anything)` contains one of them).
 * Replacements spell the placeholder the same way; inside base64 the placeholder is written as it is.
 *
 * Every spelling is at least as long as the token (a base64 window shorter than the token is under MIN_DERIVED
 * and left out): scrubberFor relies on it to skip short header strings without building the spellings.
 */
export function tokenNeedles (token: string, placeholder: string): Needle[] {
  const out: Needle[] = [{ secret: token, replacement: placeholder }]
  const encoders = [
    encodeURIComponent,
    (s: string) => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase()),
    (s: string) => new URLSearchParams({ v: s }).toString().slice(2),
    (s: string) => encodeURIComponent(encodeURIComponent(s)),
  ]
  for (const encode of encoders) out.push({ secret: encode(token), replacement: encode(placeholder) })
  for (const escape of TEXT_ESCAPES) {
    const secret = escape(token)
    if (secret !== token) out.push({ secret, replacement: escape(placeholder) })
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

/**
 * A token as JSON and HTML encoders write it into a body, for tokens with characters they escape (base64 keys carry
 * `/`, `+` and `=`; a JWT, of letters, digits, `.`, `_` and `-`, has no such spelling). Each is one encoder's whole
 * rule: JSON as JavaScript and Python write it, with `\/` as PHP does, with `\u003c`-style escapes as Go does; HTML
 * with the five named references (escape-html, PHP), and with every character outside letters, digits and `,._ -`
 * as a numeric reference in hex (OWASP ESAPI, lower case; upper case) and in decimal. An encoder escaping some other
 * subset of characters writes a spelling not listed here.
 */
const TEXT_ESCAPES: ReadonlyArray<(s: string) => string> = [
  (s) => JSON.stringify(s).slice(1, -1),
  (s) => JSON.stringify(s).slice(1, -1).replace(/\//g, '\\/'),
  (s) => JSON.stringify(s).slice(1, -1).replace(/[<>&]/g, (c) => `\\u00${hex(c)}`),
  (s) => s.replace(/[&<>"']/g, (c) => NAMED[c]!),
  (s) => s.replace(HTML_ESCAPED, (c) => `&#x${hex(c)};`),
  (s) => s.replace(HTML_ESCAPED, (c) => `&#x${hex(c).toUpperCase()};`),
  (s) => s.replace(HTML_ESCAPED, (c) => `&#${c.charCodeAt(0)};`),
]
const NAMED: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const HTML_ESCAPED = /[^A-Za-z0-9,._ -]/g

function hex (c: string): string {
  return c.charCodeAt(0).toString(16)
}

/** Basic auth: the exact `base64(user:token)` sidekey sent (replaced by the placeholder's), then the token's own needles. */
export function basicNeedles (username: string, token: string, placeholder: string): Needle[] {
  const basic = (secret: string): string => Buffer.from(`${username}:${secret}`).toString('base64')
  return [{ secret: basic(token), replacement: basic(placeholder) }, ...tokenNeedles(token, placeholder)]
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
    return this.#compiled ??= compile(this.#needles())
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

  /** A scrubber for one streamed body. */
  body (): BodyScrubber {
    const c = this.#compile()
    return new BodyScrubber(c.bytes, c.window)
  }
}

interface Compiled {
  /** Over header strings (the needles as JS strings). */
  readonly text: RegExp
  readonly replacement: ReadonlyMap<string, string>
  /** The needles' UTF-8 bytes for bodies, longest first. */
  readonly bytes: readonly ByteNeedle[]
  /** Shortest needle in UTF-16 units: a header string shorter than this cannot hold one. */
  readonly shortest: number
  readonly window: number
}

function compile (needles: readonly Needle[]): Compiled {
  const unique = new Map<string, string>()
  for (const n of needles) if (n.secret !== '' && !unique.has(n.secret)) unique.set(n.secret, n.replacement)
  const sorted = [...unique].sort((a, b) => b[0].length - a[0].length)
  const bytes = sorted.map(([secret, replacement]) => ({ bytes: Buffer.from(secret), with: Buffer.from(replacement) }))
  return {
    text: alternation(sorted.map(([secret]) => secret)),
    replacement: unique,
    bytes,
    shortest: sorted.length === 0 ? Infinity : sorted.at(-1)![0].length,
    window: Math.max(0, ...bytes.map((n) => n.bytes.length - 1)),
  }
}

/** One global RegExp matching any of `literals` (in order of preference); one that never matches for none. */
function alternation (literals: readonly string[]): RegExp {
  if (literals.length === 0) return /(?!)/g
  return new RegExp(literals.map((l) => l.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')).join('|'), 'g')
}

/**
 * Scrubs one body as it streams. Each chunk is searched together with the last `window` bytes of the previous
 * one, which are held back until the next chunk (or the end): memory is one chunk plus the window, and a needle
 * split across chunks is still found. A match that starts before the held-back tail is complete by then: the
 * tail is shorter than any needle.
 */
export class BodyScrubber {
  readonly #needles: readonly ByteNeedle[]
  readonly #window: number
  #held: Buffer = EMPTY
  /** A needle was found (and replaced) in this body. */
  echoed = false

  constructor (needles: readonly ByteNeedle[], window: number) {
    this.#needles = needles
    this.#window = window
  }

  /** The scrubbed bytes that can be sent now (possibly empty). */
  push (chunk: Buffer): Buffer {
    const buf = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk])
    return this.#scan(buf, buf.length - this.#window)
  }

  /** What was held back, scrubbed: call once at the end of the body. */
  end (): Buffer {
    const buf = this.#held
    return this.#scan(buf, buf.length)
  }

  /** Sends what lies before `limit` (and any needle starting there), scrubbed; holds back the rest. */
  #scan (buf: Buffer, limit: number): Buffer {
    if (limit <= 0) {
      this.#held = buf
      return EMPTY
    }
    const needles = this.#needles
    // Where each needle next occurs at or after `pos` (-1: nowhere before `limit`): each is searched once per chunk
    // unless a replacement skips past its occurrence.
    const next = needles.map((n) => below(buf.indexOf(n.bytes), limit))
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

/** An occurrence only counts when it starts before `limit`; past it, it is found again in the next chunk. */
function below (index: number, limit: number): number {
  return index < limit ? index : -1
}

const EMPTY = Buffer.alloc(0)
