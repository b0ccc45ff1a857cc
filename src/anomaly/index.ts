import type { AnomalyConfig } from './config.js'
import type { Detector } from './detector.js'
import type { RateLimitOptions } from './rate-limit.js'
import { AuthFailuresDetector } from './auth-failures.js'
import { CredentialEchoedDetector } from './credential-echoed.js'
import { MethodDeniedDetector } from './method-denied.js'
import { NewEndpointDetector } from './new-endpoint.js'
import { RateSpikeDetector } from './rate-spike.js'
import { UnexpectedCredentialDetector } from './unexpected-credential.js'
import { UnmatchedDestinationDetector } from './unmatched-destination.js'

export type { AnomalyFinding, Detector } from './detector.js'
export { anomalyConfig, type AnomalyConfig } from './config.js'
export { AnomalyRateLimiter, type RateLimitOptions } from './rate-limit.js'
export { looksLikeSecret } from '../secrets/secret-shape.js'
export { pathShape } from '../secrets/path-shape.js'
export {
  AuthFailuresDetector, CredentialEchoedDetector, MethodDeniedDetector, NewEndpointDetector, RateSpikeDetector,
  UnexpectedCredentialDetector, UnmatchedDestinationDetector,
}

/**
 * The enabled detectors, fresh (with empty learned state), from the `anomaly:` config section.
 *
 * @example
 *   const hub = new AuditHub({ logger, metrics, instanceId, detectors: createDetectors(config.anomaly),
 *     rateLimit: anomalyRateLimit(config.anomaly) })
 */
export function createDetectors (config: AnomalyConfig): Detector[] {
  const out: Detector[] = []
  if (config.unmatched_destination.enabled) out.push(new UnmatchedDestinationDetector())
  if (config.unexpected_credential.enabled) out.push(new UnexpectedCredentialDetector())
  if (config.method_denied.enabled) out.push(new MethodDeniedDetector())
  if (config.credential_echoed.enabled) out.push(new CredentialEchoedDetector())
  if (config.new_endpoint.enabled) {
    const n = config.new_endpoint
    out.push(new NewEndpointDetector({ learningWindowMs: n.learning_window, maxShapes: n.max_shapes }))
  }
  if (config.rate_spike.enabled) {
    const r = config.rate_spike
    out.push(new RateSpikeDetector({
      windowMs: r.window,
      factor: r.factor,
      minCount: r.min_count,
      baselineWindows: r.baseline_windows,
      warmupWindows: r.warmup_windows,
    }))
  }
  if (config.auth_failures.enabled) {
    const a = config.auth_failures
    out.push(new AuthFailuresDetector({ threshold: a.threshold, windowMs: a.window }))
  }
  return out
}

/** The hub's anomaly log rate limit from the `anomaly:` config section. */
export function anomalyRateLimit (config: AnomalyConfig): RateLimitOptions {
  return { max: config.rate_limit.max, windowMs: config.rate_limit.window }
}
