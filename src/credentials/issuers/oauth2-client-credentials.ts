import type { ClientCredentialsIssuerConfig } from '../../config/schema.js'
import type { Issuer, IssuerFactory } from '../issuer.js'
import { createOAuthEndpoint } from './oauth-endpoint.js'
import { setAudience, setScope } from './token-endpoint.js'

/**
 * `oauth2_client_credentials` (RFC 6749 §4.4): one POST per fetch with `grant_type=client_credentials`, the tool's
 * scopes as `scope` and its audience as `resource` (RFC 8707) and/or `audience` per `audience_param`.
 * `params` are sent too, but cannot override the grant, scope, audience or client authentication. With `resource`
 * instead of `token_url`, the token endpoint is discovered (oauth-endpoint.ts) and `resource` is always the
 * configured one.
 *
 * @example
 *   const issuer = createClientCredentialsIssuer('corp-idp', config, { clock, dispatcher })
 *   const cred = await issuer.fetch({ tool: 'github', scopes: ['repo:read'], audience: 'https://api.github.com',
 * instanceId, signal })
 */
export const createClientCredentialsIssuer: IssuerFactory<ClientCredentialsIssuerConfig> = (
  name, config, deps
): Issuer => {
  const endpoint = createOAuthEndpoint(name, config, deps)
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
    ...(endpoint.revoke === undefined ? {} : { revoke: endpoint.revoke }),
  }
}
