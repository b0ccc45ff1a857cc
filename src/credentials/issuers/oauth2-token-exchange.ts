import type { TokenExchangeIssuerConfig } from '../../config/schema.js'
import type { Issuer, IssuerFactory } from '../issuer.js'
import { createOAuthEndpoint } from './oauth-endpoint.js'
import { setAudience, setScope } from './token-endpoint.js'
import { FileSource } from './watched-file.js'
import { IssuerError } from '../../errors.js'

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'

/**
 * `oauth2_token_exchange` (RFC 8693 §2.1): trades this instance's identity (`subject_token_file`, e.g. a
 * Kubernetes projected service-account token) for a token scoped to the tool. The subject and actor token files
 * are re-read whenever they change, since the kubelet rotates them in place.
 *
 * @example
 *   const issuer = createTokenExchangeIssuer('exchange', config, { clock, dispatcher })
 *   const cred = await issuer.fetch({ tool: 'crm', scopes: ['crm.read'], audience: 'https://crm.example',
 * instanceId, signal })
 */
export const createTokenExchangeIssuer: IssuerFactory<TokenExchangeIssuerConfig> = (name, config, deps): Issuer => {
  const endpoint = createOAuthEndpoint(name, config, deps)
  const subject = new FileSource(config.subject_token_file, 'subject_token_file')
  const actor = config.actor_token_file === undefined
    ? undefined
    : new FileSource(config.actor_token_file, 'actor_token_file')

  const readToken = async (file: FileSource): Promise<string> => {
    const { text } = await file.read()
    if (text.length === 0) throw new IssuerError('SIDEKEY_ISSUER_FAILED', `${file.label} ${file.path} is empty`)
    return text
  }

  return {
    type: 'oauth2_token_exchange',
    async fetch (req) {
      const form = new URLSearchParams(config.params)
      form.set('grant_type', TOKEN_EXCHANGE_GRANT)
      form.set('subject_token', await readToken(subject))
      form.set('subject_token_type', config.subject_token_type)
      if (actor !== undefined) {
        form.set('actor_token', await readToken(actor))
        form.set('actor_token_type', config.actor_token_type)
      }
      form.set('requested_token_type', config.requested_token_type)
      form.delete('scope')
      setScope(form, req.scopes)
      setAudience(form, req.audience, config.audience_param)
      return endpoint.exchange(form, req.signal)
    },
    ...(endpoint.revoke === undefined ? {} : { revoke: endpoint.revoke }),
  }
}
