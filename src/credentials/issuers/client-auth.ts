import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto'
import { IssuerError, SidekeyError } from '../../errors.js'
import { Secret } from '../../util/secret.js'
import type { ClientCredentialsIssuerConfig } from '../../config/schema.js'
import { FileSource } from './watched-file.js'

export type ClientAuthMethod = ClientCredentialsIssuerConfig['auth_method']

/** The client-authentication part of an OAuth issuer's config (client_id is optional for token exchange). */
export interface ClientAuthConfig {
  readonly client_id?: string | undefined
  readonly client_secret?: string | undefined
  readonly client_secret_file?: string | undefined
  readonly private_key_file?: string | undefined
  readonly auth_method: ClientAuthMethod
}

/** Authenticates the client on one token request, by form fields or an Authorization header. */
export interface ClientAuth {
  readonly method: ClientAuthMethod
  apply (form: URLSearchParams, headers: Record<string, string>): Promise<void>
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const ASSERTION_TTL_S = 60

/**
 * Builds the client authentication of an OAuth issuer. Config mistakes (a method without what it needs) throw
 * SIDEKEY_CONFIG_INVALID at once; files are read at request time, and again whenever they change, so a rotated
 * client secret or key is picked up without a reload.
 *
 * @example
 *   const auth = createClientAuth('corp-idp', config, config.token_url)
 *   await auth.apply(form, headers) // before each POST to the token endpoint
 */
export function createClientAuth (
  issuerName: string, config: ClientAuthConfig, tokenUrl: string | (() => string)
): ClientAuth {
  // A discovered token endpoint can change; an assertion names the one it is sent to now.
  const audience = typeof tokenUrl === 'string' ? () => tokenUrl : tokenUrl
  const invalid = (msg: string): SidekeyError =>
    new SidekeyError('SIDEKEY_CONFIG_INVALID', `issuers.${issuerName}: ${msg}`)
  const method = config.auth_method
  const clientId = config.client_id
  switch (method) {
    case 'client_secret_basic':
    case 'client_secret_post': {
      if (clientId === undefined) throw invalid(`auth_method ${method} needs client_id`)
      const secret = secretSource(config, invalid, method)
      return {
        method,
        async apply (form, headers) {
          const value = (await secret()).reveal()
          if (method === 'client_secret_post') {
            form.set('client_id', clientId)
            form.set('client_secret', value)
          } else {
            // RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined and base64-encoded.
            const pair = `${formEncode(clientId)}:${formEncode(value)}`
            headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`
          }
        },
      }
    }
    case 'private_key_jwt': {
      if (clientId === undefined) throw invalid('auth_method private_key_jwt needs client_id')
      if (config.private_key_file === undefined) throw invalid('auth_method private_key_jwt needs private_key_file')
      const key = new SigningKeySource(config.private_key_file)
      return {
        method,
        async apply (form) {
          const { key: privateKey, alg, kid } = await key.get()
          // The assertion is checked by the authorization server against its own clock, so it carries wall-clock
          // time, not the injectable Clock that schedules refreshes.
          const now = Math.floor(Date.now() / 1000)
          // jose only here, when an assertion is due: a config without private_key_jwt never loads it.
          const { SignJWT } = await import('jose')
          const assertion = await new SignJWT({})
            .setProtectedHeader(kid === undefined ? { alg } : { alg, kid })
            .setIssuer(clientId)
            .setSubject(clientId)
            .setAudience(audience())
            .setJti(randomUUID())
            .setIssuedAt(now)
            .setExpirationTime(now + ASSERTION_TTL_S)
            .sign(privateKey)
          form.set('client_id', clientId)
          form.set('client_assertion_type', ASSERTION_TYPE)
          form.set('client_assertion', assertion)
        },
      }
    }
    case 'none':
      return {
        method,
        async apply (form) {
          if (clientId !== undefined) form.set('client_id', clientId)
        },
      }
  }
}

/** application/x-www-form-urlencoded encoding of one value (spaces become `+`, as RFC 6749 Appendix B says). */
export function formEncode (value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1)
}

function secretSource (
  config: ClientAuthConfig, invalid: (m: string) => SidekeyError, method: string
): () => Promise<Secret> {
  if (config.client_secret !== undefined && config.client_secret_file !== undefined) {
    throw invalid('give client_secret or client_secret_file, not both')
  }
  if (config.client_secret !== undefined) {
    const secret = new Secret(config.client_secret)
    return async () => secret
  }
  if (config.client_secret_file === undefined) {
    throw invalid(`auth_method ${method} needs client_secret_file or client_secret`)
  }
  const file = new FileSource(config.client_secret_file, 'client_secret_file')
  let current: Secret | undefined
  return async () => {
    const { text, changed } = await file.read()
    if (text.length === 0) throw new IssuerError('SIDEKEY_ISSUER_FAILED', `client_secret_file ${file.path} is empty`)
    if (changed || current === undefined) current = new Secret(text)
    return current
  }
}

interface SigningKey { readonly key: KeyObject, readonly alg: string, readonly kid: string | undefined }

const EC_ALGS: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }
const ALGS_BY_TYPE: Record<string, readonly string[]> = {
  ec: ['ES256', 'ES384', 'ES512'],
  rsa: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  'rsa-pss': ['PS256', 'PS384', 'PS512'],
  ed25519: ['EdDSA'],
}

/** The private key for client assertions: a PEM (PKCS#8, SEC1 or PKCS#1) or a private JWK, re-imported on change. */
class SigningKeySource {
  readonly #file: FileSource
  #current: SigningKey | undefined

  constructor (path: string) { this.#file = new FileSource(path, 'private_key_file') }

  async get (): Promise<SigningKey> {
    const { text, changed } = await this.#file.read()
    if (!changed && this.#current !== undefined) return this.#current
    this.#current = importSigningKey(text, this.#file.path)
    return this.#current
  }
}

function importSigningKey (text: string, path: string): SigningKey {
  const unusable = (why: string): IssuerError =>
    new IssuerError('SIDEKEY_ISSUER_FAILED', `private_key_file ${path} ${why}`)
  let key: KeyObject
  let jwk: Record<string, unknown> | undefined
  try {
    if (text.trimStart().startsWith('{')) {
      jwk = JSON.parse(text) as Record<string, unknown>
      key = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' })
    } else {
      key = createPrivateKey(text)
    }
  } catch {
    // The parser's message is not kept: it can quote the input.
    throw unusable('does not hold a private key in PEM or JWK form')
  }
  const type = key.asymmetricKeyType ?? ''
  const allowed = ALGS_BY_TYPE[type]
  if (allowed === undefined) {
    throw unusable(`holds a ${type || 'non-asymmetric'} key, which cannot sign client assertions`)
  }
  const kid = typeof jwk?.kid === 'string' ? jwk.kid : undefined
  if (typeof jwk?.alg === 'string') {
    if (!allowed.includes(jwk.alg)) throw unusable(`names alg ${jwk.alg}, which does not fit its ${type} key`)
    return { key, alg: jwk.alg, kid }
  }
  if (type === 'ec') {
    const alg = EC_ALGS[key.asymmetricKeyDetails?.namedCurve ?? '']
    if (alg === undefined) throw unusable('holds an EC key on an unsupported curve')
    return { key, alg, kid }
  }
  return { key, alg: allowed[0]!, kid }
}
