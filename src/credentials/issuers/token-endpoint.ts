import type { Dispatcher } from 'undici'
import { IssuerError } from '../../errors.js'
import type { IssuedCredential, Issuer, IssuerDeps } from '../issuer.js'
import type { ClientAuth } from './client-auth.js'
import type { DpopKey } from '../dpop.js'
import type { Credential } from '../provider.js'
import { issuedCredential, jwtFacts, MAX_TOKEN_BYTES, usableToken } from './token-value.js'
import { errorCode } from '../../errors.js'
import { RETRY_AFTER_MAX_MS } from '../backoff.js'

/** Lifetime assumed when a response has neither `expires_in` nor a JWT `exp` (RFC 6749 §5.1 leaves it open). */
export const DEFAULT_LIFETIME_MS = 3_600_000
/** A Retry-After longer than this is read as this. */

export type AudienceParam = 'resource' | 'audience' | 'both' | 'none'

/** One attempt at an OAuth 2.0 token endpoint (RFC 6749 §3.2), shared by every OAuth issuer. */
export interface TokenEndpoint {
  /** `host[:port]` of the token URL: what error messages name. */
  readonly host: string
  /**
   * POSTs `form` (after client authentication is added) and returns the credential in the response.
   * Throws IssuerError: SIDEKEY_ISSUER_TIMEOUT when aborted or timed out, SIDEKEY_ISSUER_FAILED for transport
   * errors and 4xx/5xx (with `retryAfterMs` on 429/503), SIDEKEY_ISSUER_RESPONSE for anything else unusable.
   */
  exchange (form: URLSearchParams, signal: AbortSignal): Promise<IssuedCredential>
}

export interface TokenEndpointOptions {
  readonly tokenUrl: string
  readonly auth: ClientAuth
  /**
   * Upper bound on the whole exchange, on top of the caller's signal (threat model: faults, issuer outages: ≤ 10 s
   * by default).
   */
  readonly timeoutMs: number
  readonly deps: IssuerDeps
  /** `dpop: true`: each token request carries a proof of this key, and the token must come back bound to it. */
  readonly dpop?: DpopKey | undefined
}

/**
 * @example
 *   const endpoint = createTokenEndpoint({ tokenUrl, auth, timeoutMs: 10_000, deps })
 *   const cred = await endpoint.exchange(new URLSearchParams({ grant_type: 'client_credentials' }), signal)
 */
export function createTokenEndpoint (opts: TokenEndpointOptions): TokenEndpoint {
  const { tokenUrl, auth, timeoutMs, deps, dpop } = opts
  const host = new URL(tokenUrl).host
  const where = `token endpoint ${host}`

  return {
    host,
    async exchange (form, signal) {
      // One retry when a DPoP issuer answers with a nonce challenge (RFC 9449 §8): the new nonce goes in the proof.
      const first = await post(form, signal, true)
      return first === NONCE_RETRY ? await post(form, signal, false) as IssuedCredential : first
    },
  }

  async function post (
    form: URLSearchParams, signal: AbortSignal, mayRetry: boolean
  ): Promise<IssuedCredential | typeof NONCE_RETRY> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/x-www-form-urlencoded',
    }
    await auth.apply(form, headers)
    if (dpop !== undefined) headers.dpop = dpop.proof('POST', tokenUrl)
    const timeout = AbortSignal.timeout(timeoutMs)
    const both = AbortSignal.any([signal, timeout])
    const failed = (err: unknown): IssuerError => {
      if (signal.aborted) return new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `request to ${where} was aborted`)
      if (timeout.aborted) {
        return new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `request to ${where} timed out after ${timeoutMs} ms`)
      }
      // `moved`: the endpoint may have gone; a discovered one is looked up again (oauth-endpoint.ts).
      const why = `request to ${where} failed (${errorCode(err)})`
      return new IssuerError('SIDEKEY_ISSUER_FAILED', why, { cause: { moved: true } })
    }
    const issuedAt = deps.clock.now()
    let res: Dispatcher.ResponseData
    try {
      res = await deps.dispatcher.request({
        ...originAndPath(tokenUrl),
        method: 'POST',
        headers,
        body: form.toString(),
        signal: both,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        // Redirects are never followed, even if the dispatcher was composed with undici's redirect interceptor.
        ...({ maxRedirections: 0 } as object),
      })
    } catch (err) {
      throw failed(err)
    }

    const { statusCode, headers: resHeaders, body } = res
    if (statusCode >= 300 && statusCode < 400) {
      discard(body)
      const why = `${where} answered a redirect (HTTP ${statusCode}), which is not followed`
      throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', why)
    }
    let raw: Buffer | undefined
    try {
      raw = await readCapped(body, resHeaders['content-length'], MAX_TOKEN_BYTES)
    } catch (err) {
      throw failed(err)
    }
    if (statusCode !== 200) {
      const code = oauthErrorCode(raw)
      const nonceAsked = statusCode === 400 && code === 'use_dpop_nonce'
      if (dpop?.observe(tokenUrl, resHeaders, nonceAsked) === true && mayRetry) return NONCE_RETRY
      const retryAfterMs = statusCode === 429 || statusCode === 503
        ? parseRetryAfter(resHeaders['retry-after'])
        : undefined
      const moved = MOVED_STATUSES.has(statusCode) || code === 'invalid_client'
      throw new IssuerError('SIDEKEY_ISSUER_FAILED',
        `${where} answered HTTP ${statusCode}${code === undefined ? '' : ` (error ${code})`}`,
        { ...(retryAfterMs === undefined ? {} : { retryAfterMs }), ...(moved ? { cause: { moved } } : {}) })
    }
    if (raw === undefined) {
      const why = `${where} answered with a body larger than ${MAX_TOKEN_BYTES} bytes`
      throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', why)
    }
    dpop?.observe(tokenUrl, resHeaders, false)
    return parseTokenResponse(raw, issuedAt, where, dpop)
  }
}

const NONCE_RETRY = Symbol('retry with the new DPoP nonce')

/** Answers that suggest the token endpoint is no longer where the metadata said (with `invalid_client`). */
const MOVED_STATUSES = new Set([404, 405, 410])

/** True for a token-endpoint failure that a fresh look at the authorization server's metadata might cure. */
export function suggestsMoved (err: unknown): boolean {
  return err instanceof IssuerError && (err.cause as { moved?: unknown } | undefined)?.moved === true
}

/** A URL as a dispatcher takes it: always through the issuer's own dispatcher, never undici's global one. */
export function originAndPath (url: string): { origin: string, path: string } {
  const u = new URL(url)
  return { origin: u.origin, path: `${u.pathname}${u.search}` }
}

/**
 * RFC 7009 revocation for an OAuth issuer with `revocation_url`: each dropped token is POSTed there with the same
 * client authentication as token requests (`token_type_hint=access_token`). Resolves to how many the endpoint
 * accepted (HTTP 200); throws IssuerError naming the first failure (never the token). Without a URL, nothing.
 *
 * @example
 *   return { type: 'oauth2_client_credentials', fetch, ...revocation(config.revocation_url, auth, config.timeout,
 * deps) }
 */
export function revocation (
  url: string | undefined, auth: ClientAuth, timeoutMs: number, deps: IssuerDeps
): Pick<Issuer, 'revoke'> {
  if (url === undefined) return {}
  return { revoke: (dropped, signal) => revokeAt(url, dropped, signal, auth, timeoutMs, deps) }
}

/** POSTs each dropped token to `url` (RFC 7009); resolves to how many were accepted, throws at the first failure. */
export async function revokeAt (url: string, dropped: readonly Credential[], signal: AbortSignal, auth: ClientAuth,
  timeoutMs: number, deps: IssuerDeps): Promise<number> {
  const where = `revocation endpoint ${new URL(url).host}`
  let revoked = 0
  for (const cred of dropped) {
    const form = new URLSearchParams({ token: cred.token.reveal(), token_type_hint: 'access_token' })
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/x-www-form-urlencoded',
    }
    await auth.apply(form, headers)
    let statusCode: number
    try {
      const res = await deps.dispatcher.request({
        ...originAndPath(url),
        method: 'POST',
        headers,
        body: form.toString(),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        ...({ maxRedirections: 0 } as object),
      })
      statusCode = res.statusCode
      await res.body.dump()
    } catch (err) {
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', `request to ${where} failed (${errorCode(err)})`)
    }
    if (statusCode !== 200) throw new IssuerError('SIDEKEY_ISSUER_FAILED', `${where} answered HTTP ${statusCode}`)
    revoked++
  }
  return revoked
}

/**
 * Validates a 200 token response body (RFC 6749 §5.1) and turns it into a credential. Nothing of the body is
 * quoted in an error except an RFC 6749 `error` code of lowercase letters and underscores.
 */
export function parseTokenResponse (raw: Buffer, issuedAt: number, where: string, dpop?: DpopKey): IssuedCredential {
  const bad = (why: string): IssuerError =>
    new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where} answered HTTP 200 with ${why}`)
  const body = jsonObject(raw, bad)
  if (body.access_token === undefined) {
    const code = oauthErrorCode(raw)
    throw bad(code === undefined ? 'no access_token' : `no access_token (error ${code})`)
  }
  const value = usableToken(body.access_token, `the access_token from ${where}`)
  const tokenType = body.token_type
  const expected = dpop === undefined ? /^(bearer|n_a)$/i : /^dpop$/i
  if ((dpop !== undefined || tokenType !== undefined) && (typeof tokenType !== 'string' || !expected.test(tokenType))) {
    throw bad(typeof tokenType === 'string' && /^[A-Za-z0-9_-]{1,32}$/.test(tokenType)
      ? `token_type ${tokenType}, not ` +
        (dpop === undefined ? 'Bearer' : 'DPoP (dpop: true asks for a token bound to sidekey\'s key)')
      : 'an unusable token_type')
  }
  const facts = jwtFacts(value)
  let expiresAt: number
  const expiresIn = body.expires_in
  if (expiresIn === undefined) {
    if (facts?.expiresAt !== undefined) {
      if (!(facts.expiresAt > issuedAt)) throw bad('no expires_in and a JWT that is already expired')
      expiresAt = facts.expiresAt
    } else {
      expiresAt = issuedAt + DEFAULT_LIFETIME_MS
    }
  } else {
    if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw bad('an expires_in that is not a positive number')
    }
    // issuedAt is taken before the request was sent, so the lifetime errs on the short side.
    expiresAt = issuedAt + expiresIn * 1000
  }
  const credential = issuedCredential(value, issuedAt, expiresAt, facts)
  return dpop === undefined ? credential : { ...credential, dpop }
}

/** A body that must be a JSON object; `bad` builds the error naming what it was instead. */
export function jsonObject (raw: Buffer, bad: (why: string) => Error): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(raw.toString('utf8'))
  } catch {
    throw bad('a body that is not JSON')
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('JSON that is not an object')
  return json as Record<string, unknown>
}

/**
 * Retry-After as milliseconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), clamped to
 * [0, RETRY_AFTER_MAX_MS]; undefined when absent or malformed. An HTTP-date is wall-clock time, so it is read
 * against `now` (default Date.now()), not the injectable Clock.
 */
export function parseRetryAfter (value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim()
  if (v === undefined || v === '') return undefined
  let ms: number
  if (/^\d+$/.test(v)) {
    ms = Number(v) * 1000
  } else {
    if (!/GMT$|\d{4}$/.test(v)) return undefined
    const at = Date.parse(v)
    if (Number.isNaN(at)) return undefined
    ms = at - now
  }
  return Math.min(Math.max(ms, 0), RETRY_AFTER_MAX_MS)
}

/** Adds the tool's audience as RFC 8707 `resource` and/or `audience` (Auth0, RFC 8693). */
export function setAudience (form: URLSearchParams, audience: string | undefined, param: AudienceParam): void {
  if (audience === undefined) return
  if (param === 'resource' || param === 'both') form.set('resource', audience)
  if (param === 'audience' || param === 'both') form.set('audience', audience)
}

/** `scope` is the space-joined scopes (RFC 6749 §3.3), omitted when there are none. */
export function setScope (form: URLSearchParams, scopes: readonly string[]): void {
  if (scopes.length > 0) form.set('scope', scopes.join(' '))
}

// RFC 6749 §5.2 allows most printable ASCII in `error`; only lowercase letters and underscores are quoted (every
// registered code fits), so a server echoing a token there cannot get it into a log.
function oauthErrorCode (raw: Buffer | undefined): string | undefined {
  if (raw === undefined || raw.length === 0) return undefined
  try {
    const json = JSON.parse(raw.toString('utf8')) as { error?: unknown } | null
    const code = json?.error
    return typeof code === 'string' && /^[a-z_]{1,48}$/.test(code) ? code : undefined
  } catch {
    return undefined
  }
}

/** The body, or undefined when it is larger than `max` (then the stream is destroyed unread). */
export async function readCapped (
  body: Body, contentLength: string | string[] | undefined, max: number
): Promise<Buffer | undefined> {
  if (typeof contentLength === 'string' && Number(contentLength) > max) {
    discard(body)
    return undefined
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > max) {
      discard(body)
      return undefined
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

export type Body = AsyncIterable<Buffer> & { destroy (): unknown, on (event: 'error', fn: () => void): unknown }

/** Drops a body unread; destroying it makes undici emit an abort error that nobody else would be listening for. */
export function discard (body: Body): void {
  body.on('error', () => {})
  body.destroy()
}
