import { IssuerError } from '../../errors.js'
import { Secret } from '../../util/secret.js'
import type { IssuedCredential } from '../issuer.js'

/**
 * No credential is trusted for longer than this, whatever its source claims (threat model: faults, issuer outages:
 * TTL capped).
 */
export const MAX_LIFETIME_MS = 24 * 3_600_000

/** The largest token or token response any issuer accepts. */
export const MAX_TOKEN_BYTES = 64 * 1024

/** What scheduling needs from a token that is a JWT: read, never verified (the issuer vouches for it). */
export interface JwtFacts {
  /** `exp` in milliseconds since the epoch. */
  readonly expiresAt: number | undefined
  readonly jti: string | undefined
}

// A jti ends up in logs and metrics labels, so only a short printable one is used as the credential id.
const SAFE_JTI = /^[\x21-\x7e]{1,128}$/

/** `exp` and `jti` of a compact JWS; undefined when the token is not one (opaque tokens, JWEs). */
export function jwtFacts (token: string): JwtFacts | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  const claims = jsonObject(parts[1]!)
  if (claims === undefined) return undefined
  const exp = typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined
  const jti = typeof claims.jti === 'string' && SAFE_JTI.test(claims.jti) ? claims.jti : undefined
  return { expiresAt: exp, jti }
}

const BASE64URL = /^[A-Za-z0-9_-]+$/

/**
 * The JSON object a base64url segment holds, or undefined (jose's decodeJwt, without loading jose at start:
 * docs/performance.md).
 */
function jsonObject (segment: string): Record<string, unknown> | undefined {
  if (!BASE64URL.test(segment)) return undefined
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
    const isRecord = typeof value === 'object' && value !== null && !Array.isArray(value)
    return isRecord ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

// Printable ASCII, inner spaces and tabs allowed: anything else could split or corrupt the header it is put in.
const USABLE_TOKEN = /^[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?$/

/**
 * Checks that a value an issuer produced can be used as a credential: a non-empty string that is safe to put in
 * a header. `what` names the source in the error ("access_token", "the file"); the value itself never appears.
 */
export function usableToken (value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${what} holds no token`)
  }
  if (value.length > MAX_TOKEN_BYTES) {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${what} holds a token longer than ${MAX_TOKEN_BYTES} bytes`)
  }
  if (!USABLE_TOKEN.test(value)) {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${what} holds a token with characters not allowed in a header`)
  }
  return value
}

/**
 * Builds the credential handed to the engine: the id is the JWT `jti` when there is one, else the fingerprint;
 * the expiry is capped at MAX_LIFETIME_MS after `issuedAt`, and one at or before `issuedAt` is refused.
 */
export function issuedCredential (
  value: string, issuedAt: number, expiresAt: number | undefined, facts = jwtFacts(value)
): IssuedCredential {
  const token = new Secret(value)
  if (expiresAt !== undefined && !(expiresAt > issuedAt)) {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', 'the credential is already expired')
  }
  return {
    token,
    issuedAt,
    expiresAt: expiresAt === undefined ? undefined : Math.min(expiresAt, issuedAt + MAX_LIFETIME_MS),
    id: facts?.jti ?? token.fingerprint(),
  }
}

/** Control characters and anything outside printable ASCII become `?`, and the text is cut to `max` characters. */
export function sanitizeForMessage (text: string, max = 200): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?')
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean
}
