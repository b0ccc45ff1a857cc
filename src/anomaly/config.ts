import * as z from 'zod'
import { parseDuration } from '../util/duration.js'

/**
 * The `anomaly:` config section: one block per detector with an `enabled` flag and its thresholds, plus the
 * log rate limit. Every key has a default, so `anomaly: {}` (or no section) runs every detector.
 *
 * @example
 *   anomaly:
 *     new_endpoint: { learning_window: 30m }
 *     rate_spike: { factor: 10, min_count: 500 }
 *     auth_failures: { enabled: false }
 */

const duration = (def: string) => z.union([z.string(), z.number()])
  .default(def)
  .transform((v, ctx) => {
    const ms = parseDuration(v)
    if (ms === undefined || ms <= 0) {
      ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)} (use e.g. 30s, 5m, 1h)` })
      return z.NEVER
    }
    return ms
  })

const enabled = z.boolean().default(true)

export const anomalyConfig = z.strictObject({
  /** Per kind and tool, at most `max` anomaly lines per `window`; the rest are counted and summarised in one line. */
  rate_limit: z.strictObject({
    max: z.number().int().min(1).default(10),
    window: duration('1m'),
  }).prefault({}),
  unmatched_destination: z.strictObject({ enabled }).prefault({}),
  unexpected_credential: z.strictObject({ enabled }).prefault({}),
  method_denied: z.strictObject({ enabled }).prefault({}),
  credential_echoed: z.strictObject({ enabled }).prefault({}),
  new_endpoint: z.strictObject({
    enabled,
    /** From a tool's first use, the endpoints seen are learned, not reported. */
    learning_window: duration('10m'),
    /** Endpoint shapes remembered per tool; past this, new shapes are no longer tracked (reported once). */
    max_shapes: z.number().int().min(1).max(100_000).default(1000),
  }).prefault({}),
  rate_spike: z.strictObject({
    enabled,
    /** The counting bucket. */
    window: duration('1m'),
    /** A bucket fires when its count exceeds `factor` × the moving baseline ... */
    factor: z.number().gt(1).default(5),
    /** ... and is at least this many requests. */
    min_count: z.number().int().min(1).default(100),
    /** Buckets the baseline averages over (EWMA span). */
    baseline_windows: z.number().int().min(2).default(30),
    /** Buckets after a tool's first use before the baseline is trusted. */
    warmup_windows: z.number().int().min(1).default(5),
  }).prefault({}),
  auth_failures: z.strictObject({
    enabled,
    /** This many 401/403 answers from one tool's upstream ... */
    threshold: z.number().int().min(1).max(100_000).default(10),
    /** ... within this window. */
    window: duration('1m'),
  }).prefault({}),
}).prefault({})

export type AnomalyConfig = z.output<typeof anomalyConfig>
