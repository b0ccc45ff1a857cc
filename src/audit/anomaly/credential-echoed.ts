import type { AuditEvent } from '../events.js'
import type { AnomalyFinding, Detector } from './detector.js'
import { pathShape } from './path-shape.js'

/**
 * `credential.used` whose answer held the injected credential (`echoed`): the upstream sent it back in a header or
 * body. The agent got the placeholder; the anomaly says where, never what.
 */
export class CredentialEchoedDetector implements Detector {
  readonly kind = 'credential_echoed' as const

  observe (event: AuditEvent): AnomalyFinding | undefined {
    if (event.event !== 'credential.used' || event.echoed === undefined) return undefined
    return { kind: this.kind, tool: event.tool, detail: `${event.method} ${pathShape(event.path)} ${event.status}: credential echoed in ${event.echoed.join(', ')}; replaced by the placeholder` }
  }
}
