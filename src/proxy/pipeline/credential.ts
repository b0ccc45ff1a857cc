import type { Credential } from '../../credentials/provider.js'
import { SidekeyError } from '../../errors.js'
import { pathWithoutQuery } from '../../util/path.js'
import type { Refusal, RoutedContext } from './context.js'

/** Where the call goes upstream, and how to get the credential for it (again, for a 401 replay). */
export interface CredentialSource {
  /** `scheme://host[:port]` the exchange dials. */
  readonly origin: string
  readonly perCall: boolean
  /** The current credential, or a fresh per-call token bound to this call; undefined when none is valid. */
  readonly next: () => Credential | undefined
}

export function credentialSource (ctx: RoutedContext, origin: string): CredentialSource {
  const { rt, tool, method } = ctx
  const perCall = tool.config.per_call !== undefined
  // A per-call token is bound to what the upstream will see: method, URL without the query (RFC 9449 htu), and
  // an MCP tool's JSON-RPC call (read by the MCP policy step before this).
  const call = () => ({ method, url: origin + pathWithoutQuery(ctx.path), task: ctx.task, mcp: ctx.mcp?.call })
  const next = perCall ? () => rt.credentials.mint(tool.name, call()) : () => rt.credentials.current(tool.name)
  return { origin, perCall, next }
}

/** No valid credential: 503 with the refresher's own estimate of when to try again. */
export function credentialUnavailable (ctx: RoutedContext): Refusal {
  const tool = ctx.tool.name
  return {
    error: new SidekeyError('SIDEKEY_CREDENTIAL_UNAVAILABLE', 'no valid credential for this tool',
      { details: { tool } }),
    outcome: 'credential_unavailable',
    headers: { 'retry-after': String(ctx.rt.credentials.retryAfterSeconds(tool)) },
  }
}
