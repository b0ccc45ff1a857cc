import { IssuerError } from '../errors.js'
import { Secret } from '../util/secret.js'
import type { IssuedCredential } from './issuer.js'
import { MAX_LIFETIME_MS } from './issuers/token-value.js'

/** An AWS key set, as the SigV4 injector signs with it. */
export interface AwsKeySet {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken: string | undefined
}

// Printable ASCII without spaces: what AWS key ids, secrets and session tokens are made of.
const KEY_PART = /^[\x21-\x7e]{1,4096}$/
const parsed = new WeakMap<Secret, AwsKeySet>()

/** True when a JSON value is in the `credential_process` shape (it names an AccessKeyId). */
export function isAwsKeyDocument (json: unknown): json is Record<string, unknown> {
  return json !== null && typeof json === 'object' && !Array.isArray(json) && Object.hasOwn(json, 'AccessKeyId')
}

/**
 * The `credential_process` JSON (`Version: 1`, `AccessKeyId`, `SecretAccessKey`, optional `SessionToken` and
 * `Expiration`) as a credential: the token is the key set (a Secret), the id the access key id's fingerprint,
 * the expiry `Expiration` (capped like every credential). `where` names the source in errors, never a value.
 */
export function awsKeyCredential (doc: Record<string, unknown>, issuedAt: number, where: string): IssuedCredential {
  if (doc.Version !== 1) {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where} holds AWS keys without "Version": 1`)
  }
  const part = (field: string, required: boolean): string | undefined => {
    const v = doc[field]
    if (v === undefined && !required) return undefined
    if (typeof v !== 'string' || !KEY_PART.test(v)) {
      throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where} has no usable ${field}`)
    }
    return v
  }
  const keys: AwsKeySet = {
    accessKeyId: part('AccessKeyId', true)!,
    secretAccessKey: part('SecretAccessKey', true)!,
    sessionToken: part('SessionToken', false),
  }
  let expiresAt: number | undefined
  if (doc.Expiration !== undefined) {
    expiresAt = typeof doc.Expiration === 'string' ? Date.parse(doc.Expiration) : NaN
    if (Number.isNaN(expiresAt)) {
      throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where} has an Expiration that is not an ISO 8601 time`)
    }
    if (!(expiresAt > issuedAt)) {
      throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where} holds AWS keys that have already expired`)
    }
  }
  const token = new Secret(JSON.stringify(keys))
  parsed.set(token, keys)
  return {
    token,
    issuedAt,
    expiresAt: expiresAt === undefined ? undefined : Math.min(expiresAt, issuedAt + MAX_LIFETIME_MS),
    id: new Secret(keys.accessKeyId).fingerprint(),
    kind: 'aws_keys',
  }
}

/** The key set a credential holds, or undefined when it is not one (a bearer token from another issuer). */
export function awsKeySet (token: Secret): AwsKeySet | undefined {
  return parsed.get(token)
}
