import type { AuditEvent } from '../audit/events.js'
import type { AnomalyFinding, Detector } from './detector.js'
import { pathShape } from '../secrets/path-shape.js'

/** `credential.used` refused with outcome `method_denied`: a method outside the tool's `match.methods`. */
export class MethodDeniedDetector implements Detector {
  readonly kind = 'method_denied' as const

  observe (event: AuditEvent): AnomalyFinding | undefined {
    if (event.event !== 'credential.used' || event.outcome !== 'method_denied') return undefined
    const detail = `${event.method} ${pathShape(event.path)} refused: method not allowed for this tool`
    return { kind: this.kind, tool: event.tool, detail }
  }
}
