/**
 * The parameters of the first `Bearer` challenge in WWW-Authenticate (RFC 9110 §11.6.1, RFC 6750 §3): `error`,
 * `scope`, `resource_metadata`, ... Several challenges may share one field (`DPoP ..., Bearer ...`) and values may
 * be quoted strings with escapes, so it is tokenised rather than split on commas.
 */
export function bearerChallenge (header: string | readonly string[] | undefined): Record<string, string> | undefined {
  const text = Array.isArray(header) ? header.join(', ') : header
  if (typeof text !== 'string') return undefined
  let params: Record<string, string> | undefined
  const token = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*/y
  let i = 0
  while (i < text.length) {
    token.lastIndex = i
    const name = token.exec(text)
    if (name === null) { i++; continue }
    i = token.lastIndex
    if (text[i] === '=') {
      const [value, next] = paramValue(text, i + 1)
      if (params !== undefined) params[name[1]!.toLowerCase()] = value
      i = next
    } else {
      // A new challenge (scheme name): the Bearer one collects what follows; a later one ends it.
      if (params !== undefined) return params
      if (name[1]!.toLowerCase() === 'bearer') params = Object.create(null) as Record<string, string>
    }
    while (text[i] === ',' || text[i] === ' ') i++
  }
  return params
}

/** A token or quoted-string value starting at `i`, and where the text goes on after it. */
function paramValue (text: string, i: number): [string, number] {
  while (text[i] === ' ') i++
  if (text[i] !== '"') {
    const end = text.slice(i).search(/[,\s]/)
    return end === -1 ? [text.slice(i), text.length] : [text.slice(i, i + end), i + end]
  }
  let out = ''
  for (i++; i < text.length; i++) {
    const c = text[i]!
    if (c === '\\' && i + 1 < text.length) out += text[++i]
    else if (c === '"') return [out, i + 1]
    else out += c
  }
  return [out, i]
}
