import t from 'tap'
import fc from 'fast-check'
import { BACKOFF_MAX_MS, RETRY_AFTER_MAX_MS, nextDelay } from '../../src/credentials/backoff.js'

t.test('delays grow 1 s × 1.6 per attempt without jitter at the midpoint (threat model: faults, issuer outages)', async (t) => {
  const mid = (): number => 0.5
  t.same([1, 2, 3, 4, 5].map((n) => nextDelay(n, mid)), [1000, 1600, 2560, 4096, 6554])
})

t.test('jitter stays within ±20 %', async (t) => {
  t.equal(nextDelay(1, () => 0), 800)
  t.equal(nextDelay(1, () => 0.999999), 1200)
  t.equal(nextDelay(3, () => 0), 2048)
})

t.test('the delay is capped at 120 s, jitter included', async (t) => {
  t.equal(nextDelay(12, () => 0.5), BACKOFF_MAX_MS)
  t.equal(nextDelay(40, () => 0.999999), BACKOFF_MAX_MS)
  t.equal(nextDelay(40, () => 0), 96_000)
  t.equal(nextDelay(10_000, () => 0.5), BACKOFF_MAX_MS)
})

t.test('every delay is within [0.8, 1.2] × min(120 s, 1 s × 1.6^(n−1)) and ≤ 120 s', async () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 200 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (n, r) => {
    const base = Math.min(BACKOFF_MAX_MS, 1000 * 1.6 ** (n - 1))
    const d = nextDelay(n, () => r)
    return d >= Math.floor(base * 0.8) && d <= Math.ceil(Math.min(BACKOFF_MAX_MS, base * 1.2))
  }))
})

t.test('Retry-After wins when it asks for longer, capped at an hour', async (t) => {
  t.equal(nextDelay(1, () => 0.5, 30_000), 30_000)
  t.equal(nextDelay(12, () => 0.5, 300_000), 300_000, 'beyond the backoff cap too')
  t.equal(nextDelay(1, () => 0.5, 10 * RETRY_AFTER_MAX_MS), RETRY_AFTER_MAX_MS)
  t.equal(nextDelay(5, () => 0.5, 500), 6554, 'a shorter Retry-After does not shorten the backoff')
  t.equal(nextDelay(1, () => 0.5, Number.NaN), 1000)
})
