/**
 * A strict JSON reader (RFC 8259) for JSON-RPC bodies sidekey judges. Parsers disagree on a repeated member name
 * (JSON.parse and Python keep the last, others the first or refuse), so a body that repeats one, under any spelling
 * of it (`"name"` and `"\u006eame"` are one name), is refused rather than guessed at: every reader of the bytes sent
 * upstream then sees the method and name sidekey checked. A byte order mark, invalid UTF-8 and a string holding a
 * lone surrogate are refused for the same reason.
 */
export class JsonSyntaxError extends Error {}

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d])
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Parses a whole body; throws JsonSyntaxError on anything but exactly one strict JSON value. */
export function parseStrictJson (bytes: Buffer): unknown {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    throw new JsonSyntaxError('not UTF-8')
  }
  if (text.charCodeAt(0) === 0xfeff) throw new JsonSyntaxError('byte order mark')
  const reader = new Reader(text)
  const value = reader.value()
  reader.skipWhitespace()
  if (reader.at < text.length) throw new JsonSyntaxError('trailing bytes')
  return value
}

class Reader {
  at = 0
  readonly #text: string

  constructor (text: string) {
    this.#text = text
  }

  skipWhitespace (): void {
    while (WHITESPACE.has(this.#text.charCodeAt(this.at))) this.at++
  }

  value (): unknown {
    this.skipWhitespace()
    const c = this.#text[this.at]
    if (c === '{') return this.#object()
    if (c === '[') return this.#array()
    if (c === '"') return this.#string()
    for (const [word, v] of LITERALS) if (this.#text.startsWith(word, this.at)) { this.at += word.length; return v }
    NUMBER.lastIndex = this.at
    const m = NUMBER.exec(this.#text)
    if (m === null || m[0] === '') throw new JsonSyntaxError(`unexpected character at ${this.at}`)
    this.at += m[0].length
    return Number(m[0])
  }

  #object (): Record<string, unknown> {
    this.at++
    // A null-prototype object: `__proto__` is a member like any other.
    const out: Record<string, unknown> = Object.create(null)
    const seen = new Set<string>()
    this.skipWhitespace()
    if (this.#text[this.at] === '}') { this.at++; return out }
    for (;;) {
      this.skipWhitespace()
      if (this.#text[this.at] !== '"') throw new JsonSyntaxError(`expected a member name at ${this.at}`)
      const key = this.#string()
      if (seen.has(key)) throw new JsonSyntaxError(`member "${key}" repeated`)
      seen.add(key)
      this.#expect(':')
      out[key] = this.value()
      if (this.#separator('}')) return out
    }
  }

  #array (): unknown[] {
    this.at++
    const out: unknown[] = []
    this.skipWhitespace()
    if (this.#text[this.at] === ']') { this.at++; return out }
    for (;;) {
      out.push(this.value())
      if (this.#separator(']')) return out
    }
  }

  /** After a member or element: true at the closing bracket, false after a comma. */
  #separator (close: string): boolean {
    this.skipWhitespace()
    const c = this.#text[this.at++]
    if (c === close) return true
    if (c === ',') return false
    throw new JsonSyntaxError(`expected , or ${close} at ${this.at - 1}`)
  }

  #expect (c: string): void {
    this.skipWhitespace()
    if (this.#text[this.at++] !== c) throw new JsonSyntaxError(`expected ${c} at ${this.at - 1}`)
  }

  #string (): string {
    const text = this.#text
    let out = ''
    let from = ++this.at
    for (;;) {
      const code = text.charCodeAt(this.at)
      if (Number.isNaN(code)) throw new JsonSyntaxError('unterminated string')
      if (code < 0x20) throw new JsonSyntaxError(`control character in a string at ${this.at}`)
      if (code === 0x22) break
      if (code !== 0x5c) { this.at++; continue }
      out += text.slice(from, this.at)
      const e = text[this.at + 1] ?? ''
      if (e === 'u') {
        const hex = text.slice(this.at + 2, this.at + 6)
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError(`bad \\u escape at ${this.at}`)
        out += String.fromCharCode(parseInt(hex, 16))
        this.at += 6
      } else {
        const plain = ESCAPES[e]
        if (plain === undefined) throw new JsonSyntaxError(`bad escape at ${this.at}`)
        out += plain
        this.at += 2
      }
      from = this.at
    }
    out += text.slice(from, this.at)
    this.at++
    if (LONE_SURROGATE.test(out)) throw new JsonSyntaxError('lone surrogate in a string')
    return out
  }
}

const LITERALS: ReadonlyArray<readonly [string, unknown]> = [['true', true], ['false', false], ['null', null]]
