import type { Credential } from '../credentials/provider.js'
import type { Tool } from './router.js'

/**
 * Attaches the credential to the upstream request: the one place a secret is revealed.
 * Returns the path to send (changed only for query injection).
 */
export function inject (tool: Tool, credential: Credential, headers: string[], pathAndQuery: string): string {
  const spec = tool.config.inject
  const token = credential.token.reveal()
  if (spec.header !== undefined) {
    // A replacer function: a token may contain `$&` or `$'`, which a replacement string would expand.
    headers.push(spec.header, spec.format === undefined ? token : spec.format.replace('{token}', () => token))
    return pathAndQuery
  }
  if (spec.basic !== undefined) {
    headers.push('authorization', 'Basic ' + Buffer.from(`${spec.basic.username}:${token}`).toString('base64'))
    return pathAndQuery
  }
  return withQueryParam(pathAndQuery, spec.query!, token)
}

/**
 * Removes every `name=` the agent sent (its placeholder) and appends the real one. The other parameters are kept
 * byte for byte: re-serialising them would re-encode (`%20` → `+`) and break signed URLs.
 */
export function withQueryParam (pathAndQuery: string, name: string, value: string | undefined): string {
  const q = pathAndQuery.indexOf('?')
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q)
  const kept = q < 0 ? [] : pathAndQuery.slice(q + 1).split('&').filter((part) => part !== '' && paramName(part) !== name)
  if (value !== undefined) kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
  return kept.length === 0 ? path : `${path}?${kept.join('&')}`
}

function paramName (part: string): string {
  const eq = part.indexOf('=')
  const raw = (eq < 0 ? part : part.slice(0, eq)).replaceAll('+', ' ')
  try { return decodeURIComponent(raw) } catch { return raw }
}

/** The agent's value of a query parameter, for placeholder classification. */
export function queryParam (pathAndQuery: string, name: string): string[] | undefined {
  const q = pathAndQuery.indexOf('?')
  if (q < 0) return undefined
  const values = new URLSearchParams(pathAndQuery.slice(q + 1)).getAll(name)
  return values.length === 0 ? undefined : values
}
