import type { IncomingMessage, ServerResponse } from 'node:http'
import type {
  AuditEvent, CredentialUsed, EgressDenied, EgressPassed, PlaceholderState, TlsClientError,
} from '../../audit/events.js'
import type { SidekeyError } from '../../errors.js'
import type { ByteFilter, McpCall } from '../../mcp/index.js'
import type { BudgetCharge } from '../../budget/index.js'
import { pathWithoutQuery } from '../../util/path.js'
import { sendError } from '../respond.js'
import type { Tool } from '../router.js'
import type { Runtime } from '../runtime.js'
import type { RequestTarget } from '../ingress/target.js'
import { NO_SPAN, type Span } from '../../tracing/index.js'
import { endSpan } from '../../tracing/request-span.js'

/** Why a request may not go on: the error to answer with, and the outcome its audit event records. */
export interface Refusal {
  readonly error: SidekeyError
  /** `credential.used`'s outcome for a tool's refusal (`method_denied`, `locked`, ...). */
  readonly outcome: string
  readonly headers?: Readonly<Record<string, string>>
  /** Answers the agent in place of respond.ts's error body (an MCP refusal, in JSON-RPC). */
  readonly answer?: (res: ServerResponse, requestId: string) => void
  /** Fields the refusal's `credential.used` adds (`budget`: which budget ran out). */
  readonly audit?: Pick<CredentialUsed, 'budget'>
}

type UsedExtra = Partial<Omit<CredentialUsed, 'event' | 'tool' | 'method' | 'host' | 'path' | 'client' | 'request_id'>>

/**
 * One request on its way through the pipeline: what every stage reads, and the one place its audit event is written.
 * Exactly one event per request: the first of `refuse`, `used`, `denied` or `passed` writes it, and the others are
 * no-ops after it (a stage that answers twice cannot log twice).
 */
export class RequestContext {
  readonly rt: Runtime
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly target: RequestTarget
  readonly client: string
  readonly requestId: string
  readonly method: string
  readonly started = performance.now()
  /** The normalised path and query: matched, audited and sent upstream in this one form. */
  path: string
  task: string | undefined
  /** Set once the request is routed to a tool; policy steps run only then (`RoutedContext`). */
  tool: Tool | undefined
  /** What the agent sent where the credential goes. */
  placeholder: PlaceholderState = 'absent'
  /** The credential attached, once there is one (a 401 replay swaps it). */
  credentialId: string | null = null
  /** An MCP tool's POST (src/mcp/): the call for the audit, the body judged (sent as read), the answer's filter. */
  mcp: {
    call?: McpCall, body?: Buffer, filter: (contentType: string | undefined) => ByteFilter | undefined
  } | undefined

  /** The body a call waiting for approval was held with: the exact bytes approved are the bytes sent. */
  heldBody: Buffer | undefined
  /** The tool's token budgets this call is charged to: its answer is read for usage as it passes. */
  budget: BudgetCharge | undefined
  /** The request's span (NO_SPAN with tracing off); ended with the request's audit event, which names its trace. */
  readonly span: Span
  #recorded = false

  constructor (
    rt: Runtime, req: IncomingMessage, res: ServerResponse, target: RequestTarget, client: string, requestId: string
  ) {
    this.rt = rt
    this.req = req
    this.res = res
    this.target = target
    this.client = client
    this.requestId = requestId
    this.method = req.method ?? 'GET'
    this.path = target.pathAndQuery
    this.span = rt.tracing === undefined ? NO_SPAN : rt.tracing.request(req.headers)
  }

  /**
   * Answers the agent with the refusal and audits it: `credential.used` with its outcome once a tool is known, else
   * `egress.denied` with the outcome as its reason.
   */
  refuse (refusal: Refusal): void {
    if (refusal.answer !== undefined) refusal.answer(this.res, this.requestId)
    else sendError(this.res, refusal.error, this.requestId, refusal.headers)
    if (this.tool === undefined) this.denied(refusal.outcome)
    else {
      // An answer of its own (an MCP refusal in JSON-RPC) does not carry the error code: the audit line does.
      const error = refusal.answer === undefined ? {} : { error: refusal.error.code }
      this.used(refusal.error.status, { outcome: refusal.outcome, ...error, ...refusal.audit })
    }
  }

  /** The tool's `credential.used`: a call that went out (or was refused after routing, with an outcome). */
  used (status: number, extra: UsedExtra = {}): void {
    if (this.tool === undefined) throw new Error('credential.used needs a routed request')
    this.#emit({
      event: 'credential.used',
      tool: this.tool.name,
      credential_id: this.credentialId,
      method: this.method,
      host: this.target.host,
      path: pathWithoutQuery(this.path),
      status,
      duration_ms: this.elapsed(),
      client: this.client,
      placeholder: this.placeholder,
      request_id: this.requestId,
      ...(this.target.hostMismatch === true ? { host_mismatch: true } : {}),
      ...(this.task === undefined ? {} : { task: this.task }),
      ...(this.tool.upstream === undefined ? {} : { upstream: this.tool.upstream.origin }),
      ...(this.mcp?.call === undefined ? {} : { mcp: this.mcp.call }),
      ...extra,
    })
  }

  /** `egress.denied`: refused before (or instead of) a tool's call, with the audit reason. */
  denied (reason: string, port = this.target.port): void {
    this.#emit({
      event: 'egress.denied',
      host: this.target.host,
      port,
      reason,
      client: this.client,
      method: this.method,
      request_id: this.requestId,
      path: pathWithoutQuery(this.path),
      ...(this.tool === undefined ? {} : { tool: this.tool.name }),
    })
  }

  /** A pass-through's event (`egress.passed` or `egress.inventory`), built by the pass-through stage. */
  passed (event: AuditEvent): void {
    this.#emit(event)
  }

  /**
   * Something that happened after the request's event, tied to it by request_id (a WebSocket message echoing the key).
   */
  later (event: AuditEvent): void {
    this.rt.audit.emit(event)
  }

  /** Milliseconds since the request arrived, rounded to microseconds. */
  elapsed (): number {
    return round(performance.now() - this.started)
  }

  #emit (event: AuditEvent): void {
    if (this.#recorded) return
    this.#recorded = true
    if (this.span !== NO_SPAN) endSpan(this.span, event, this.task)
    this.rt.audit.emit(event)
  }
}

/**
 * What ingress reports before there is a request to give a context (a refused CONNECT or request target, a blind
 * tunnel's end, a failed TLS handshake): one event each, of these kinds only.
 */
export function ingressEvent (rt: Runtime, event: EgressDenied | EgressPassed | TlsClientError): void {
  rt.audit.emit(event)
}

/** A request routed to a tool: what policy steps, the credential and the exchange stages see. */
export type RoutedContext = RequestContext & { readonly tool: Tool }

export function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}
