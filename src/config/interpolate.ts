/** What `${VAR}` interpolation of one string made of it. */
export interface Interpolated {
  readonly value: string
  /** True when at least one `${...}` was replaced (so a plain scalar may be re-typed as a number or boolean). */
  readonly substituted: boolean
  /** Values taken from the environment: they must never be echoed in a message. */
  readonly envValues: readonly string[]
  /** Variables that were needed, unset, and had no default. */
  readonly missing: readonly string[]
  /** A syntax error (`${` without `}`, a bad name), when there is one. */
  readonly error: string | undefined
}

/**
 * Compose-style interpolation: `${VAR}`, `${VAR:-default}` (default when unset or empty; defaults may nest:
 * `${A:-${B:-x}}`), `$$` for a literal `$`. A `$` followed by anything else stays as written, so a value like
 * `pa$word` needs no escaping. A default is only evaluated when it is used, so a missing variable inside an
 * unused default is not an error.
 *
 * @example interpolate('${HOST:-localhost}:80', { }) // → { value: 'localhost:80', ... }
 */
export function interpolate (text: string, env: NodeJS.ProcessEnv): Interpolated {
  const envValues: string[] = []
  const missing: string[] = []
  let substituted = false
  let error: string | undefined
  const NAME = /[A-Za-z_][A-Za-z0-9_]*/y

  // Returns the expansion of text[i..] up to (not including) an unmatched `}` when nested, and where it stopped.
  const expand = (i: number, nested: boolean, evaluate: boolean): [string, number] => {
    let out = ''
    while (i < text.length) {
      const c = text[i]
      if (nested && c === '}') return [out, i]
      if (c !== '$') { out += c; i++; continue }
      const next = text[i + 1]
      if (next === '$') { out += '$'; i += 2; continue }
      if (next !== '{') { out += '$'; i++; continue }
      i += 2
      NAME.lastIndex = i
      const m = NAME.exec(text)
      if (m === null) {
        error ??= 'bad ${...}: expected a variable name (letters, digits, _) after ${'
        return [out, text.length]
      }
      const name = m[0]
      i += name.length
      substituted = true
      const set = env[name]
      if (text[i] === '}') {
        i++
        if (set === undefined) {
          if (evaluate && !missing.includes(name)) missing.push(name)
        } else {
          out += set
          if (evaluate) envValues.push(set)
        }
        continue
      }
      if (text.startsWith(':-', i)) {
        const useDefault = set === undefined || set === ''
        const [def, end] = expand(i + 2, true, evaluate && useDefault)
        if (text[end] !== '}') {
          error ??= `bad \${${name}:-...}: missing closing }`
          return [out, text.length]
        }
        i = end + 1
        if (useDefault) out += def
        else {
          out += set
          if (evaluate) envValues.push(set)
        }
        continue
      }
      error ??= `bad \${${name}...}: expected } or :-default}`
      return [out, text.length]
    }
    if (nested) error ??= 'bad ${...}: missing closing }'
    return [out, i]
  }

  const [value] = expand(0, false, true)
  return { value, substituted, envValues, missing, error }
}
