/**
 * Retry delays after a failed issuer call: gRPC's connection backoff (1 s, ×1.6, ±20 % jitter, 120 s cap),
 * with the issuer's Retry-After taking over when it asks for longer.
 */

export const BACKOFF_INITIAL_MS = 1000
export const BACKOFF_MULTIPLIER = 1.6
export const BACKOFF_JITTER = 0.2
export const BACKOFF_MAX_MS = 120_000
/** A Retry-After beyond this is an issuer bug or an attack on our availability: we retry after an hour anyway. */
export const RETRY_AFTER_MAX_MS = 3_600_000

/**
 * Milliseconds to wait before retry number `attempt` (1 for the first retry after the first failure).
 * `random` returns [0, 1) like Math.random; `retryAfterMs` is IssuerError.retryAfterMs.
 *
 * @example
 *   nextDelay(1, Math.random)          // 800..1200
 *   nextDelay(3, () => 0.5)            // 2560
 *   nextDelay(1, Math.random, 30_000)  // 30000: Retry-After wins
 */
export function nextDelay (attempt: number, random: () => number, retryAfterMs?: number): number {
  const n = Math.max(1, Math.floor(attempt))
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * BACKOFF_MULTIPLIER ** (n - 1))
  const jittered = base * (1 + BACKOFF_JITTER * (2 * random() - 1))
  // The cap bounds the delay itself, jitter included: nobody waits more than 120 s for our own schedule.
  const delay = Math.round(Math.min(BACKOFF_MAX_MS, jittered))
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > delay) {
    return Math.round(Math.min(RETRY_AFTER_MAX_MS, retryAfterMs))
  }
  return delay
}
