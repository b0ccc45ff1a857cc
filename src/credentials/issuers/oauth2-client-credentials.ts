import type { ClientCredentialsIssuerConfig } from '../../config/schema.js'
import type { Issuer, IssuerFactory } from '../issuer.js'
import { createClientAuth } from './client-auth.js'
import { DpopKey } from '../dpop.js'
import { createTokenEndpoint, revocation, setAudience, setScope } from './token-endpoint.js'

/**
 * `oauth2_client_credentials` (RFC 6749 §4.4): one POST per fetch with `grant_type=client_credentials`, the tool's
 * scopes as `scope` and its audience as `resource` (RFC 8707) and/or `audience` per `audience_param`.
 * `params` are sent too, but cannot override the grant, scope, audience or client authentication.
 *
 * @example
 *   const issuer = createClientCredentialsIssuer('corp-idp', config, { clock, dispatcher })
 *   const cred = await issuer.fetch({ tool: 'github', scopes: ['repo:read'], audience: 'https://api.github.com', instanceId, signal })
 */
export const createClientCredentialsIssuer: IssuerFactory<ClientCredentialsIssuerConfig> = (name, config, deps): Issuer => {
  const auth = createClientAuth(name, config, config.token_url)
  const endpoint = createTokenEndpoint({ tokenUrl: config.token_url, auth, timeoutMs: config.timeout, deps, dpop: config.dpop ? new DpopKey() : undefined })
  return {
    type: 'oauth2_client_credentials',
    fetch (req) {
      const form = new URLSearchParams(config.params)
      form.set('grant_type', 'client_credentials')
      form.delete('scope')
      setScope(form, req.scopes)
      setAudience(form, req.audience, config.audience_param)
      return endpoint.exchange(form, req.signal)
    },
    ...revocation(config.revocation_url, auth, config.timeout, deps),
  }
}
