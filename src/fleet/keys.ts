import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { calculateJwkThumbprint, type JWK } from 'jose'
import { SidekeyError } from '../errors.js'

/** Operator key algorithms: ES256 (P-256) and EdDSA (Ed25519). */
export type OperatorAlg = 'ES256' | 'EdDSA'

export interface OperatorPublicKey {
  readonly kid: string
  readonly alg: OperatorAlg
  readonly key: KeyObject
  readonly jwk: JWK
}

export interface OperatorPrivateKey {
  readonly kid: string
  readonly alg: OperatorAlg
  readonly key: KeyObject
}

/**
 * `fleet.operator_keys`: a JWKS file (`{"keys":[...]}`) or a PEM public key (SPKI, as `openssl pkey -pubout` writes
 * it). Keys of other types are refused by name; a PEM key's kid is its RFC 7638 thumbprint, as keygen and `--key`
 * compute it.
 */
export async function loadOperatorKeys (file: string): Promise<Map<string, OperatorPublicKey>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw invalid(`fleet.operator_keys ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  return parseOperatorKeys(text, file)
}

export async function parseOperatorKeys (text: string, file: string): Promise<Map<string, OperatorPublicKey>> {
  const keys = new Map<string, OperatorPublicKey>()
  if (text.includes('-----BEGIN')) {
    let key: KeyObject
    try {
      key = createPublicKey(text)
    } catch {
      throw invalid(`fleet.operator_keys ${file} is not a PEM public key`)
    }
    const k = await describe(key, file)
    keys.set(k.kid, k)
    return keys
  }
  let jwks: { keys?: unknown }
  try {
    jwks = JSON.parse(text) as { keys?: unknown }
  } catch {
    throw invalid(`fleet.operator_keys ${file} is neither a JWKS (JSON) nor a PEM public key`)
  }
  if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) throw invalid(`fleet.operator_keys ${file} holds no keys`)
  for (const [i, raw] of jwks.keys.entries()) {
    const jwk = raw as JWK
    if (jwk === null || typeof jwk !== 'object' || 'd' in jwk) {
      throw invalid(`fleet.operator_keys ${file}: key ${i} is not a public JWK`)
    }
    let key: KeyObject
    try {
      key = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' })
    } catch {
      throw invalid(`fleet.operator_keys ${file}: key ${i} is not a usable JWK`)
    }
    const k = await describe(key, `${file} key ${i}`, typeof jwk.kid === 'string' ? jwk.kid : undefined)
    keys.set(k.kid, k)
  }
  return keys
}

/** An operator's private key for signing commands: PKCS#8 PEM (what `openssl genpkey` and `fleet keygen` write). */
export async function loadOperatorPrivateKey (file: string): Promise<OperatorPrivateKey> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw invalid(`--key ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  let key: KeyObject
  try {
    key = createPrivateKey(text)
  } catch {
    throw invalid(`--key ${file} is not a PEM private key`)
  }
  const pub = await describe(createPublicKey(key), `--key ${file}`)
  return { kid: pub.kid, alg: pub.alg, key }
}

/** The public JWK of a key as published in a JWKS: kid (thumbprint unless given), alg, use. */
async function describe (key: KeyObject, where: string, kid?: string): Promise<OperatorPublicKey> {
  const alg = algOf(key)
  if (alg === undefined) throw invalid(`${where}: operator keys are EC P-256 (ES256) or Ed25519 (EdDSA)`)
  const exported = key.export({ format: 'jwk' }) as JWK
  const thumbprint = await calculateJwkThumbprint(exported, 'sha256')
  const id = kid ?? thumbprint
  return { kid: id, alg, key, jwk: { ...exported, kid: id, alg, use: 'sig' } }
}

function algOf (key: KeyObject): OperatorAlg | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  return undefined
}

function invalid (message: string): SidekeyError {
  return new SidekeyError('SIDEKEY_CONFIG_INVALID', message)
}
