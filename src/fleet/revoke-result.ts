import type { RevokeOutcome } from '../credentials/provider.js'

/** What a fleet revoke did on one instance, as its acknowledgement says it. */
export type RevokeResult =
  | { readonly result: 'applied' }
  | { readonly result: 'not_revocable', readonly reason: string }
  | { readonly result: 'failed', readonly error: string }

/** Longest reason an acknowledgement carries (a revoke of `*` may gather one per issuer type). */
const MAX_REASON = 400

/** When the issuer handed back the credential already held: nothing was revoked anywhere. */
const SAME_CREDENTIAL: Readonly<Record<string, string>> = {
  file: 'file issuer: the file holds the same secret; rotate the secret at its source',
  exec: 'exec issuer: the command returned the same credential; rotate it at its source',
}

const OAUTH2_NO_REVOCATION = 'oauth2 issuer without revocation_url: a new token is in use here; ' +
  'the old one stays valid at the issuer until it expires'

/** A new credential is in use here, but the issuer cannot revoke the one dropped: it stays valid where it came from. */
const NO_REVOCATION: Readonly<Record<string, string>> = {
  file: 'file issuer: a new secret is in use here; the old one stays valid until it is revoked at its source',
  exec: 'exec issuer: a new credential is in use here; the old one stays valid until it is revoked at its source',
  oauth2_client_credentials: OAUTH2_NO_REVOCATION,
  oauth2_token_exchange: OAUTH2_NO_REVOCATION,
}

/**
 * Judges a revoke by what it did, not by its having run: a re-read that returns the same credential, or a new
 * credential whose predecessor the issuer cannot revoke, is not a revocation. Outcomes are per credential slot
 * (`*` names them all); the worst one decides, failures first.
 */
export function revokeResult (outcomes: readonly RevokeOutcome[]): RevokeResult {
  const failed = outcomes.find((o) => o.error !== undefined)
  if (failed?.error !== undefined) return { result: 'failed', error: failed.error }
  const unconfirmed = outcomes.find((o) => o.issuerError !== undefined)
  if (unconfirmed !== undefined) {
    return { result: 'failed', error: `${unconfirmed.issuerType} issuer: the revocation was not confirmed` }
  }
  const reasons = new Set<string>()
  for (const o of outcomes) {
    const type = o.issuerType
    if (o.unchanged) {
      reasons.add(SAME_CREDENTIAL[type] ?? `${type} issuer: it returned the same credential; rotate it at its source`)
    } else if (o.dropped > 0 && !o.revocable) {
      reasons.add(NO_REVOCATION[type] ?? `${type} issuer: the old credential cannot be revoked`)
    }
  }
  if (reasons.size === 0) return { result: 'applied' }
  const reason = [...reasons].join('; ')
  const cut = reason.length <= MAX_REASON ? reason : `${reason.slice(0, MAX_REASON - 3)}...`
  return { result: 'not_revocable', reason: cut }
}
