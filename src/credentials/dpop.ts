import { createHash, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto'

/** Nonces remembered per origin; a bound on how many origins one key talks to (the issuer and its tools). */
const MAX_ORIGINS = 256
// RFC 9449 §8: a nonce is an opaque printable-ASCII string; anything else is not echoed back.
const NONCE = /^[\x21-\x7e]{1,512}$/

/**
 * A DPoP key (RFC 9449): an ES256 key pair made in memory for this process, never written anywhere, and the
 * server nonces seen per origin. An oauth2 issuer with `dpop: true` proves possession of it on each token
 * request, so the token it gets is bound to it (`cnf.jkt`); the credential carries the key, and every call with
 * that token gets a fresh proof.
 *
 * @example
 *   const key = new DpopKey()
 *   headers.dpop = key.proof('POST', 'https://idp.example/token')
 *   headers.dpop = key.proof('GET', 'https://api.example/v1/items', accessToken)
 */
export class DpopKey {
  readonly #privateKey: KeyObject
  readonly #header: string
  readonly #nonces = new Map<string, string>()

  constructor () {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    this.#privateKey = privateKey
    const { kty, crv, x, y } = publicKey.export({ format: 'jwk' })
    this.#header = b64json({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } })
  }

  /**
   * A proof for one request: `htu` is the target URL without query or fragment; with `accessToken`, its hash is
   * the `ath` claim. The origin's last nonce is included when there is one.
   */
  proof (htm: string, url: string, accessToken?: string): string {
    const htu = withoutQuery(url)
    const nonce = this.#nonces.get(new URL(htu).origin)
    const claims: Record<string, string | number> = { jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000) }
    if (accessToken !== undefined) claims.ath = createHash('sha256').update(accessToken).digest('base64url')
    if (nonce !== undefined) claims.nonce = nonce
    const input = `${this.#header}.${b64json(claims)}`
    const signature = sign('sha256', Buffer.from(input), { key: this.#privateKey, dsaEncoding: 'ieee-p1363' })
    return `${input}.${signature.toString('base64url')}`
  }

  /**
   * Records a `DPoP-Nonce` the server at `url` sent. Returns true when the answer was a nonce challenge
   * (`use_dpop_nonce`, RFC 9449 §8 and §9) with a new nonce: then the request is worth one retry.
   */
  observe (
    url: string, headers: Readonly<Record<string, string | string[] | undefined>>, challenged: boolean
  ): boolean {
    const raw = headers['dpop-nonce']
    const nonce = Array.isArray(raw) ? raw[0] : raw
    if (nonce === undefined || !NONCE.test(nonce)) return false
    const origin = new URL(url).origin
    const fresh = this.#nonces.get(origin) !== nonce
    this.#nonces.delete(origin)
    if (this.#nonces.size >= MAX_ORIGINS) this.#nonces.delete(this.#nonces.keys().next().value!)
    this.#nonces.set(origin, nonce)
    return challenged && fresh
  }
}

/** True when a tool's 401 is RFC 9449 §9's nonce challenge: `WWW-Authenticate: DPoP error="use_dpop_nonce"`. */
export function isNonceChallenge (headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  const raw = headers['www-authenticate']
  const values = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]
  return values.some((v) => /^\s*dpop\b/i.test(v) && /error\s*=\s*"?use_dpop_nonce"?/i.test(v))
}

function withoutQuery (url: string): string {
  const cut = url.search(/[?#]/)
  return cut < 0 ? url : url.slice(0, cut)
}

function b64json (value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}
