import {
  createHash, generateKeyPair, constants, randomUUID, sign, type JsonWebKey, type KeyObject, type SignKeyObjectInput,
} from 'node:crypto'
import { promisify } from 'node:util'
import type { LocalJwtIssuerConfig } from '../../config/schema.js'
import { IssuerError } from '../../errors.js'
import type { Clock, Timer } from '../../util/clock.js'
import { Secret } from '../../util/secret.js'
import type {
  CallCredentialRequest, CredentialRequest, IssuedCredential, Issuer, IssuerDeps, IssuerFactory, JsonWebKeyPublic,
} from '../issuer.js'
import { mcpClaims } from '../mcp-claims.js'

/** When generating a signing key failed (it should not), try again after this long rather than spin. */
const KEYGEN_RETRY_MS = 60_000

interface SigningKey {
  readonly kid: string
  /**
   * The same key as node:crypto sees it, with the algorithm's options, for signing synchronously on the request
   * path: a fraction of the CPU of an async WebCrypto sign (measured: `npm run bench -- --sections=percall`).
   */
  readonly signer: { readonly hash: string | null, readonly key: SignKeyObjectInput | KeyObject }
  /** base64url of the protected header, the same for every token this key signs. */
  readonly header: string
  readonly jwk: JsonWebKeyPublic
  /** When it became the current key (ms since the epoch). */
  readonly since: number
}

interface RetiredKey { readonly key: SigningKey, readonly dropAt: number }

/**
 * `local_jwt`: mints JWTs in-process with a signing key generated in memory, rotated every `rotate_every`.
 * A retired key stays in `jwks()` for max(`overlap`, `ttl`) after its retirement, so every token still valid verifies.
 *
 * @example
 *   const issuer = createLocalJwtIssuer('local', config.issuers.local, { clock, dispatcher })
 *   const cred = await issuer.fetch({ tool: 'demo', scopes: ['read'], audience: 'https://api.test', instanceId,
 * signal })   // cred.token.reveal() verifies against createLocalJWKSet({ keys: issuer.jwks() })
 */
export const createLocalJwtIssuer: IssuerFactory<LocalJwtIssuerConfig> = (name, config, deps) =>
  new LocalJwtIssuer(name, config, deps)

class LocalJwtIssuer implements Issuer {
  readonly type = 'local_jwt'
  readonly #name: string
  readonly #config: LocalJwtIssuerConfig
  readonly #clock: Clock
  readonly #ttlSeconds: number
  /** The longest lifetime of a token signed so far (per-call tokens may live longer than `ttl`). */
  #longestTtlSeconds: number
  #current: SigningKey | undefined
  #retired: RetiredKey[] = []
  #rotating: Promise<SigningKey> | undefined
  #timer: Timer | undefined
  #closed = false
  readonly #listeners: Array<() => void> = []

  constructor (name: string, config: LocalJwtIssuerConfig, deps: IssuerDeps) {
    this.#name = name
    this.#config = config
    this.#clock = deps.clock
    this.#ttlSeconds = Math.max(1, Math.ceil(config.ttl / 1000))
    this.#longestTtlSeconds = this.#ttlSeconds
    // Generate the first key now so the JWKS is populated before the first token is asked for.
    this.#signingKey().catch(() => this.#armRetry())
  }

  async fetch (request: CredentialRequest): Promise<IssuedCredential> {
    let key: SigningKey
    try {
      key = await this.#signingKey()
    } catch (err) {
      const why = `local_jwt issuer "${this.#name}" could not generate a signing key`
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', why, { cause: err })
    }
    return this.#sign(key, request, this.#ttlSeconds, undefined)
  }

  /**
   * A token for one call, signed now without waiting: bound to the request (`htm`, `htu`, the agent's `task`) and
   * living `ttlMs`. A rotation that is due starts in the background; the current key signs meanwhile.
   */
  mint (request: CallCredentialRequest): IssuedCredential {
    const key = this.#current
    if (key === undefined) {
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', `local_jwt issuer "${this.#name}" has no signing key yet`)
    }
    const now = this.#clock.now()
    if (this.#rotationDue(now)) this.#rotate().catch(() => this.#armRetry())
    const ttlSeconds = Math.max(1, Math.ceil(request.ttlMs / 1000))
    if (ttlSeconds > this.#longestTtlSeconds) this.#longestTtlSeconds = ttlSeconds
    const bound: Record<string, unknown> = { htm: request.method, htu: request.url }
    if (request.task !== undefined) bound.task = request.task
    if (request.mcp !== undefined) Object.assign(bound, mcpClaims(request.mcp))
    return this.#sign(key, request, ttlSeconds, bound)
  }

  /** Signs today's claims (plus `extra`) with node:crypto: one code path for pooled and per-call tokens. */
  #sign (
    key: SigningKey, request: Omit<CredentialRequest, 'signal'>, ttlSeconds: number,
    extra: Record<string, unknown> | undefined
  ): IssuedCredential {
    const iat = Math.floor(this.#clock.now() / 1000)
    const exp = iat + ttlSeconds
    const jti = randomUUID()
    const claims: Record<string, unknown> = {
      iss: this.#config.issuer, sub: request.instanceId, jti, iat, exp, tool: request.tool,
    }
    if (request.audience !== undefined) claims.aud = request.audience
    // No scopes requested means no scope claim, like aud without an audience (RFC 9068 makes scope optional).
    if (request.scopes.length > 0) claims.scope = request.scopes.join(' ')
    if (extra !== undefined) Object.assign(claims, extra)
    const input = `${key.header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
    let signature: Buffer
    try {
      signature = sign(key.signer.hash, Buffer.from(input), key.signer.key)
    } catch (err) {
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', `local_jwt issuer "${this.#name}" could not sign`, { cause: err })
    }
    const token = new Secret(`${input}.${signature.toString('base64url')}`)
    return { token, id: jti, issuedAt: iat * 1000, expiresAt: exp * 1000 }
  }

  jwks (): readonly JsonWebKeyPublic[] {
    const now = this.#clock.now()
    this.#prune(now)
    if (this.#rotationDue(now)) this.#rotate().catch(() => this.#armRetry())
    const keys = this.#current === undefined ? [] : [this.#current.jwk]
    for (const r of this.#retired) keys.push(r.key.jwk)
    return keys
  }

  /** Fleet revoke: a new key signs from now on (the old one stays published until revoke() withdraws it). */
  async rekey (): Promise<void> {
    await this.#rotating?.catch(() => {})
    await this.#rotate()
  }

  /**
   * Fleet revoke: every key but the current leaves the JWKS at once, so tokens they signed stop verifying before
   * they expire. Every holder of this issuer's tokens (other credential slots) is told to fetch again.
   */
  async revoke (): Promise<number> {
    const withdrawn = this.#retired.length
    this.#retired = []
    this.#arm()
    for (const listener of this.#listeners) listener()
    return withdrawn
  }

  onChange (listener: () => void): void {
    this.#listeners.push(listener)
  }

  close (): void {
    this.#closed = true
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #rotationDue (now: number): boolean {
    return this.#current === undefined || now >= this.#current.since + this.#config.rotate_every
  }

  async #signingKey (): Promise<SigningKey> {
    const now = this.#clock.now()
    this.#prune(now)
    if (!this.#rotationDue(now)) return this.#current as SigningKey
    return this.#rotate()
  }

  /** Single-flight: a fetch, the timer and jwks() arriving together make one key. */
  #rotate (): Promise<SigningKey> {
    this.#rotating ??= generateSigningKey(this.#config.alg).then((fresh) => {
      const now = this.#clock.now()
      const old = this.#current
      // Tokens signed with the old key up to now stay valid for their ttl: keep it at least that long.
      if (old !== undefined) {
        this.#retired.push({ key: old, dropAt: now + Math.max(this.#config.overlap, this.#longestTtlSeconds * 1000) })
      }
      const key: SigningKey = { ...fresh, since: now }
      this.#current = key
      this.#arm()
      return key
    }).finally(() => { this.#rotating = undefined })
    return this.#rotating
  }

  #prune (now: number): void {
    if (this.#retired.some((r) => r.dropAt <= now)) this.#retired = this.#retired.filter((r) => r.dropAt > now)
  }

  /** One unref'd timer for the next rotation or key drop, whichever comes first. */
  #arm (): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#closed || this.#current === undefined) return
    let next = this.#current.since + this.#config.rotate_every
    for (const r of this.#retired) next = Math.min(next, r.dropAt)
    this.#schedule(Math.max(0, next - this.#clock.now()))
  }

  #armRetry (): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    if (!this.#closed) this.#schedule(KEYGEN_RETRY_MS)
  }

  #schedule (ms: number): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      const now = this.#clock.now()
      this.#prune(now)
      if (this.#rotationDue(now)) this.#rotate().catch(() => this.#armRetry())
      else this.#arm()
    }, ms)
    this.#timer.unref?.()
  }
}

const generateKeyPairAsync = promisify(generateKeyPair)

/**
 * A fresh key pair with node:crypto (not jose, so a default config's start does not load jose's 46 modules,
 * docs/performance.md); the private key lives only in this process's memory and is never exported.
 */
async function generateSigningKey (alg: LocalJwtIssuerConfig['alg']): Promise<Omit<SigningKey, 'since'>> {
  const { privateKey, publicKey } = await newKeyPair(alg)
  const exported = publicKey.export({ format: 'jwk' })
  const kid = jwkThumbprint(exported)
  const jwk: JsonWebKeyPublic =
    Object.freeze({ ...exported, kty: exported.kty as string, kid, alg, use: 'sig' as const })
  const header = Buffer.from(JSON.stringify({ alg, kid, typ: 'JWT' })).toString('base64url')
  return { kid, signer: signerFor(alg, privateKey), header, jwk }
}

/** The key types of RFC 7518 §3 / RFC 8037 for each algorithm; RSA at 2048 bits, as jose's default was. */
function newKeyPair (alg: LocalJwtIssuerConfig['alg']): Promise<{ privateKey: KeyObject, publicKey: KeyObject }> {
  switch (alg) {
    case 'ES256': return generateKeyPairAsync('ec', { namedCurve: 'P-256' })
    case 'ES384': return generateKeyPairAsync('ec', { namedCurve: 'P-384' })
    case 'RS256': case 'PS256': return generateKeyPairAsync('rsa', { modulusLength: 2048 })
    case 'EdDSA': return generateKeyPairAsync('ed25519')
  }
}

/** RFC 7638: SHA-256 over the key type's required members, in lexicographic order, no spaces. */
function jwkThumbprint (jwk: JsonWebKey): string {
  const required = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
  return createHash('sha256').update(JSON.stringify(required)).digest('base64url')
}

/**
 * node:crypto's hash and options for a JWS algorithm (RFC 7518 §3): JOSE wants raw r||s for ECDSA, PSS salt = hash
 * length.
 */
function signerFor (alg: LocalJwtIssuerConfig['alg'], key: KeyObject): SigningKey['signer'] {
  switch (alg) {
    case 'ES256': return { hash: 'sha256', key: { key, dsaEncoding: 'ieee-p1363' } }
    case 'ES384': return { hash: 'sha384', key: { key, dsaEncoding: 'ieee-p1363' } }
    case 'RS256': return { hash: 'sha256', key }
    case 'PS256': return { hash: 'sha256', key: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } }
    case 'EdDSA': return { hash: null, key }
  }
}
