import { randomUUID } from 'node:crypto'
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey } from 'jose'
import type { LocalJwtIssuerConfig } from '../../config/schema.js'
import { IssuerError } from '../../errors.js'
import type { Clock, Timer } from '../../util/clock.js'
import { Secret } from '../../util/secret.js'
import type { CredentialRequest, IssuedCredential, Issuer, IssuerDeps, IssuerFactory, JsonWebKeyPublic } from '../issuer.js'

/** When generating a signing key failed (it should not), try again after this long rather than spin. */
const KEYGEN_RETRY_MS = 60_000

interface SigningKey {
  readonly kid: string
  /** Non-extractable: it never leaves WebCrypto, so it cannot be written or logged. */
  readonly privateKey: CryptoKey
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
 *   const cred = await issuer.fetch({ tool: 'demo', scopes: ['read'], audience: 'https://api.test', instanceId, signal })
 *   // cred.token.reveal() verifies against createLocalJWKSet({ keys: issuer.jwks() })
 */
export const createLocalJwtIssuer: IssuerFactory<LocalJwtIssuerConfig> = (name, config, deps) =>
  new LocalJwtIssuer(name, config, deps)

class LocalJwtIssuer implements Issuer {
  readonly type = 'local_jwt'
  readonly #name: string
  readonly #config: LocalJwtIssuerConfig
  readonly #clock: Clock
  readonly #ttlSeconds: number
  #current: SigningKey | undefined
  #retired: RetiredKey[] = []
  #rotating: Promise<SigningKey> | undefined
  #timer: Timer | undefined
  #closed = false

  constructor (name: string, config: LocalJwtIssuerConfig, deps: IssuerDeps) {
    this.#name = name
    this.#config = config
    this.#clock = deps.clock
    this.#ttlSeconds = Math.max(1, Math.ceil(config.ttl / 1000))
    // Generate the first key now so the JWKS is populated before the first token is asked for.
    this.#signingKey().catch(() => this.#armRetry())
  }

  async fetch (request: CredentialRequest): Promise<IssuedCredential> {
    let key: SigningKey
    try {
      key = await this.#signingKey()
    } catch (err) {
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', `local_jwt issuer "${this.#name}" could not generate a signing key`, { cause: err })
    }
    const iat = Math.floor(this.#clock.now() / 1000)
    const exp = iat + this.#ttlSeconds
    const jti = randomUUID()
    const claims: Record<string, unknown> = { tool: request.tool }
    // No scopes requested means no scope claim, like aud without an audience (RFC 9068 makes scope optional).
    if (request.scopes.length > 0) claims.scope = request.scopes.join(' ')
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: this.#config.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(this.#config.issuer)
      .setSubject(request.instanceId)
      .setJti(jti)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
    if (request.audience !== undefined) jwt.setAudience(request.audience)
    let token: string
    try {
      token = await jwt.sign(key.privateKey)
    } catch (err) {
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', `local_jwt issuer "${this.#name}" could not sign`, { cause: err })
    }
    return { token: new Secret(token), id: jti, issuedAt: iat * 1000, expiresAt: exp * 1000 }
  }

  jwks (): readonly JsonWebKeyPublic[] {
    const now = this.#clock.now()
    this.#prune(now)
    if (this.#rotationDue(now)) this.#rotate().catch(() => this.#armRetry())
    const keys = this.#current === undefined ? [] : [this.#current.jwk]
    for (const r of this.#retired) keys.push(r.key.jwk)
    return keys
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
      // Tokens signed with the old key up to now stay valid for ttl: keep it at least that long.
      if (old !== undefined) this.#retired.push({ key: old, dropAt: now + Math.max(this.#config.overlap, this.#ttlSeconds * 1000) })
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

async function generateSigningKey (alg: LocalJwtIssuerConfig['alg']): Promise<Omit<SigningKey, 'since'>> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: false })
  const exported = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(exported, 'sha256')
  const jwk: JsonWebKeyPublic = Object.freeze({ ...exported, kty: exported.kty as string, kid, alg, use: 'sig' as const })
  return { kid, privateKey, jwk }
}
