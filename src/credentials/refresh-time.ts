import type { Credential } from './provider.js'

/**
 * A refresh starts at the latest this long before expiry, or half the lifetime for shorter ones (threat model:
 * faults, issuer outages).
 */
export const MAX_REFRESH_LEAD_MS = 5 * 60_000

/**
 * When to refresh `cred` (ms since the epoch): `at` of its lifetime ± `jitter` of that, but no later than
 * min(5 min, half the lifetime) before it expires. Undefined for a credential that does not expire.
 */
export function refreshTime (cred: Credential, at: number, jitter: number, random: () => number): number | undefined {
  if (cred.expiresAt === undefined) return undefined
  const lifetime = Math.max(0, cred.expiresAt - cred.issuedAt)
  const offset = lifetime * at * (1 + jitter * (2 * random() - 1))
  const latest = cred.expiresAt - Math.min(MAX_REFRESH_LEAD_MS, lifetime / 2)
  return Math.min(cred.issuedAt + offset, latest)
}
