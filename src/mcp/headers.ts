const SENTINEL = /^=\?base64\?(.*)\?=$/s
/** RFC 4648 §4 with the padding SEP-2243 requires. */
const CANONICAL_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** One header's value without surrounding whitespace; a repeated header (an array) stays as Node joined it. */
export function headerValue (value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  return (Array.isArray(value) ? value.join(', ') : value).replace(/^[ \t]+|[ \t]+$/g, '')
}

/** An `Mcp-Name` value as the name it carries: plain, or `=?base64?…?=` UTF-8; undefined when that is invalid. */
export function decodeHeaderName (value: string): string | undefined {
  const wrapped = SENTINEL.exec(value)
  if (wrapped === null) return value
  if (!CANONICAL_BASE64.test(wrapped[1]!)) return undefined
  try {
    return utf8.decode(Buffer.from(wrapped[1]!, 'base64'))
  } catch {
    return undefined
  }
}
