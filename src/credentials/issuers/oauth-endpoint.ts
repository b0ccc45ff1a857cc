import type { ClientCredentialsIssuerConfig, TokenExchangeIssuerConfig } from '../../config/schema.js'
import { IssuerError } from '../../errors.js'
import { DpopKey } from '../dpop.js'
import type { IssuedCredential, Issuer, IssuerDeps } from '../issuer.js'
import { createClientAuth } from './client-auth.js'
import { discover, type DiscoveredServer } from './discovery.js'
import { createTokenEndpoint, revocation, revokeAt, suggestsMoved, type TokenEndpoint } from './token-endpoint.js'

/** A discovery older than this is done again before the next token request. */
export const REDISCOVER_AFTER_MS = 24 * 3_600_000

/** Where an OAuth issuer gets tokens: its `token_url`, or the token endpoint discovered from its `resource`. */
export interface OAuthEndpoint {
  /** POSTs the grant's `form` (in discovered mode with `resource` set to the configured one). Throws IssuerError. */
  exchange (form: URLSearchParams, signal: AbortSignal): Promise<IssuedCredential>
  readonly revoke?: Issuer['revoke']
}

interface Held { readonly server: DiscoveredServer, readonly endpoint: TokenEndpoint, readonly at: number }

/**
 * The token endpoint of `oauth2_client_credentials` and `oauth2_token_exchange`. With `resource`, discovery runs
 * on the first token request, again after REDISCOVER_AFTER_MS, and again when the endpoint answers as if it had
 * moved (404, 405, 410, `invalid_client`, unreachable): then the request is retried once if the token endpoint
 * changed. The authorization server found first is pinned for the issuer's life (or `authorization_server`).
 *
 * @example
 *   const endpoint = createOAuthEndpoint('mcp', config, deps)
 *   const cred = await endpoint.exchange(new URLSearchParams({ grant_type: 'client_credentials' }), signal)
 */
export function createOAuthEndpoint (name: string, config: ClientCredentialsIssuerConfig | TokenExchangeIssuerConfig,
  deps: IssuerDeps): OAuthEndpoint {
  const dpop = config.dpop ? new DpopKey() : undefined
  const timeoutMs = config.timeout
  if (config.token_url !== undefined) {
    const auth = createClientAuth(name, config, config.token_url)
    const endpoint = createTokenEndpoint({ tokenUrl: config.token_url, auth, timeoutMs, deps, dpop })
    return {
      exchange: (form, signal) => endpoint.exchange(form, signal),
      ...revocation(config.revocation_url, auth, timeoutMs, deps),
    }
  }
  const resource = config.resource as string
  let pinned = config.authorization_server
  let held: Held | undefined
  let inflight: Promise<Held> | undefined
  const auth = createClientAuth(name, config, () => held?.server.tokenEndpoint ?? resource)

  const rediscover = (signal: AbortSignal): Promise<Held> => {
    inflight ??= discover({ resource, issuer: pinned, timeoutMs, dispatcher: deps.dispatcher, signal })
      .then((server) => {
        pinned = server.issuer
        const endpoint = createTokenEndpoint({ tokenUrl: server.tokenEndpoint, auth, timeoutMs, deps, dpop })
        held = { server, endpoint, at: deps.clock.now() }
        return held
      })
      .finally(() => { inflight = undefined })
    return inflight
  }
  const fresh = async (signal: AbortSignal): Promise<{ held: Held, cached: boolean }> =>
    held !== undefined && deps.clock.now() - held.at < REDISCOVER_AFTER_MS
      ? { held, cached: true }
      : { held: await rediscover(signal), cached: false }

  return {
    async exchange (form, signal) {
      // RFC 8707 and the MCP spec: the token is asked for the MCP server's canonical URI, whatever the tool says.
      form.set('resource', resource)
      const first = await fresh(signal)
      try {
        return await first.held.endpoint.exchange(new URLSearchParams(form), signal)
      } catch (err) {
        // One discovery per token request at most: a discovery made for this request is not redone.
        if (!first.cached || !suggestsMoved(err)) throw err
        const next = await rediscover(signal)
        if (next.server.tokenEndpoint === first.held.server.tokenEndpoint) throw err
        return await next.endpoint.exchange(new URLSearchParams(form), signal)
      }
    },
    async revoke (dropped, signal) {
      const server = (await fresh(signal)).held.server
      const url = config.revocation_url ?? server.revocationEndpoint
      if (url === undefined) {
        throw new IssuerError('SIDEKEY_ISSUER_FAILED',
          `authorization server ${server.issuer} names no revocation_endpoint (set revocation_url)`)
      }
      return revokeAt(url, dropped, signal, auth, timeoutMs, deps)
    },
  }
}
