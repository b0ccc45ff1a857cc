import type { AuditEvent } from '../audit/events.js'
import type { AnomalyFinding, Detector } from './detector.js'
import { pathShape } from '../secrets/path-shape.js'

/**
 * `credential.used` with placeholder `unexpected`: a stripped header held something other than the tool's
 * placeholder (or, with none set, something that looked like a real secret). The request path classifies; the
 * value itself never reaches an event.
 */
export class UnexpectedCredentialDetector implements Detector {
  readonly kind = 'unexpected_credential' as const

  observe (event: AuditEvent): AnomalyFinding | undefined {
    if (event.event !== 'credential.used' || event.placeholder !== 'unexpected') return undefined
    return {
      kind: this.kind,
      tool: event.tool,
      detail: `${event.method} ${pathShape(event.path)}: the agent sent a credential other than the placeholder ` +
        '(stripped, not forwarded)',
    }
  }
}
