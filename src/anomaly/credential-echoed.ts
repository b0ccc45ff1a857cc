import type { AuditEvent } from '../audit/events.js'
import type { AnomalyFinding, Detector } from './detector.js'
import { pathShape } from '../secrets/path-shape.js'

/**
 * `credential.used` whose answer held the injected credential (`echoed`): the upstream sent it back in a header or
 * body. Also `credential.echoed`: a WebSocket message held it after the 101, from the upstream (replaced, or only
 * reported when the tool does not scrub bodies) or from the agent, which should never hold it. The anomaly says
 * where, never what.
 */
export class CredentialEchoedDetector implements Detector {
  readonly kind = 'credential_echoed' as const

  observe (event: AuditEvent): AnomalyFinding | undefined {
    if (event.event === 'credential.echoed') {
      const what = event.from === 'agent'
        ? 'the agent sent the credential in ws; forwarded, but the agent should never hold it'
        : `credential echoed in ws; ${event.replaced ? REPLACED : 'passed to the agent (scrub_body is off)'}`
      return { kind: this.kind, tool: event.tool, detail: `${event.method} ${pathShape(event.path)}: ${what}` }
    }
    if (event.event !== 'credential.used' || event.echoed === undefined) return undefined
    const at = `${event.method} ${pathShape(event.path)} ${event.status}`
    const detail = `${at}: credential echoed in ${event.echoed.join(', ')}; ${REPLACED}`
    return { kind: this.kind, tool: event.tool, detail }
  }
}

const REPLACED = 'replaced by the placeholder'
