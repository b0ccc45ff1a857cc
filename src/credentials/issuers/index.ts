import type { IssuerConfig } from '../../config/schema.js'
import { SidekeyError } from '../../errors.js'
import type { Issuer, IssuerDeps } from '../issuer.js'
import { createExecIssuer } from './exec.js'
import { createFileIssuer } from './file.js'
import { createLocalJwtIssuer } from './local-jwt.js'
import { createClientCredentialsIssuer } from './oauth2-client-credentials.js'
import { createTokenExchangeIssuer } from './oauth2-token-exchange.js'

/**
 * Builds the issuer for `issuers.<name>`; one factory per `type`, one file each.
 *
 * @example
 *   const issuer = createIssuer('local', config.issuers.local, { clock, dispatcher })
 */
export function createIssuer (name: string, config: IssuerConfig, deps: IssuerDeps): Issuer {
  switch (config.type) {
    case 'local_jwt': return createLocalJwtIssuer(name, config, deps)
    case 'oauth2_client_credentials': return createClientCredentialsIssuer(name, config, deps)
    case 'oauth2_token_exchange': return createTokenExchangeIssuer(name, config, deps)
    case 'file': return createFileIssuer(name, config, deps)
    case 'exec': return createExecIssuer(name, config, deps)
    default: {
      const unknown: never = config
      const type = String((unknown as { type: unknown }).type)
      throw new SidekeyError('SIDEKEY_CONFIG_INVALID', `issuer "${name}" has unknown type ${type}`)
    }
  }
}
