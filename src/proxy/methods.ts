import { SidekeyError } from '../errors.js'
import { METHOD_OVERRIDE } from './headers.js'
import type { Tool } from './router.js'

/**
 * Methods never sent with a credential, whatever `match.methods` says: TRACE echoes the request it received,
 * credential included (RFC 9110 §9.3.8: a client must not send sensitive fields in TRACE), and CONNECT asks the
 * upstream for a tunnel, which is not a request to the tool.
 */
const NEVER_FORWARDED: ReadonlySet<string> = new Set(['TRACE', 'CONNECT'])

/** `Allow` of a 405 for a tool without `match.methods`: the methods a tool's API is called with. */
export const USUAL_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/** Why a request to `tool` may not go on, as the error and headers to answer it with. */
export interface MethodRefusal {
  readonly error: SidekeyError
  readonly headers: Record<string, string>
}

/**
 * Judges the request method and, when the tool sets `allow_method_override`, every method-override header's value
 * (headers.ts strips them otherwise): TRACE and CONNECT are refused 405 with `Allow` (RFC 9110 §15.5.6), any other
 * method outside `match.methods` 403 as before.
 */
export function methodRefusal (tool: Tool, method: string, rawHeaders: readonly string[]): MethodRefusal | undefined {
  const methods = [method]
  if (tool.config.allow_method_override) {
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (METHOD_OVERRIDE.has(rawHeaders[i]!.toLowerCase())) methods.push(rawHeaders[i + 1]!.trim().toUpperCase())
    }
  }
  for (const m of methods) {
    if (NEVER_FORWARDED.has(m)) {
      return {
        error: new SidekeyError('SIDEKEY_METHOD_NOT_ALLOWED', `method ${m} never carries a credential`,
          { details: { tool: tool.name } }),
        headers: { allow: allowed(tool) },
      }
    }
  }
  const denied = tool.methods === undefined ? undefined : methods.find((m) => !tool.methods!.has(m))
  if (denied === undefined) return undefined
  const error = new SidekeyError('SIDEKEY_METHOD_DENIED', `method ${denied} is not allowed for this tool`,
    { details: { tool: tool.name } })
  return { error, headers: {} }
}

function allowed (tool: Tool): string {
  return tool.methods === undefined
    ? USUAL_METHODS
    : [...tool.methods].filter((m) => !NEVER_FORWARDED.has(m)).join(', ')
}
