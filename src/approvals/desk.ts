import { createHash, randomBytes } from 'node:crypto'
import type { ApprovalDecided, ApprovalRequested, ApprovalSubject, AuditSink } from '../audit/events.js'

/** A call held for approval: what it is (for the approver), and what identifies it exactly (for the grant). */
export interface HeldCall {
  readonly tool: string
  readonly instance: string
  readonly method: string
  readonly host: string
  /** The normalised path and query, as sent upstream: part of what an approval is bound to. */
  readonly target: string
  readonly body: Buffer
  /** The event's fields a human reads: redacted path, preview, task, MCP call, request id, client. */
  readonly shown: Omit<ApprovalRequested, keyof ApprovalSubject | 'event' | 'method' | 'host' | 'timeout_at'>
  readonly timeoutMs: number
  readonly validForMs: number
  /** Aborted when the agent leaves (an SDK's own timeout): the call stops waiting, its approval stays open. */
  readonly signal?: AbortSignal
  /** Tells someone a new approval waits (the tool's webhook); its failures are its own to audit. */
  readonly notify?: (event: ApprovalRequested) => Promise<void>
}

/** How a held call ends: let through (by whom), refused (by whom, why), or not decided in time. */
export type Verdict =
  | { readonly kind: 'granted', readonly id: string, readonly by: string }
  | { readonly kind: 'denied', readonly id: string, readonly by: string, readonly reason?: string }
  | { readonly kind: 'timeout', readonly id: string }

/** A decision's answer to whoever gave it. */
export type DecideResult = 'decided' | 'unknown' | 'already_decided' | 'hash_mismatch'

/** A pending approval as `GET /approvals` lists it: the requested event, and whether its call still waits. */
export type PendingView = ApprovalRequested & { readonly state: 'waiting' | 'timed_out' }

interface Approval {
  readonly requested: ApprovalRequested
  readonly key: string
  readonly at: number
  /** Until when an approval given now still lets the identical call through (after its timeout). */
  readonly keepUntil: number
  readonly validForMs: number
  readonly waiters: Array<(verdict: Verdict) => void>
  timedOut: boolean
}

interface Grant { readonly id: string, readonly by: string, readonly until: number }

/**
 * Where calls wait for a human or an operator: one per sidecar, kept across config reloads. An approval is bound
 * to the exact call (tool, instance, method, host, path and query, body SHA-256); it releases one call: the held
 * one, or, when it came after the timeout, the identical call sent again within `valid_for`. Decisions and timeouts
 * are audited here; the request path only asks and waits.
 */
export class ApprovalDesk {
  readonly #audit: AuditSink
  readonly #now: () => number
  readonly #byId = new Map<string, Approval>()
  /** The undecided approval of each exact call: an identical call sent meanwhile waits on it, never asks again. */
  readonly #byKey = new Map<string, Approval>()
  readonly #grants = new Map<string, Grant>()
  /** Called with each new approval (the webhook, the fleet bucket). */
  readonly #published: Array<(event: ApprovalRequested) => void> = []

  constructor (audit: AuditSink, now: () => number = Date.now) {
    this.#audit = audit
    this.#now = now
  }

  /** Runs `listener` on each new approval; it must not throw. */
  onRequested (listener: (event: ApprovalRequested) => void): void {
    this.#published.push(listener)
  }

  /** Waits for the call's decision; an earlier approval of the identical call (given after its timeout) is used up. */
  hold (call: HeldCall): Promise<Verdict> {
    this.#sweep()
    const sha = createHash('sha256').update(call.body).digest('hex')
    const exact = [call.tool, call.instance, call.method, call.host, call.target, sha]
    const key = createHash('sha256').update(JSON.stringify(exact)).digest('hex')
    const grant = this.#grants.get(key)
    if (grant !== undefined) {
      this.#grants.delete(key)
      return Promise.resolve({ kind: 'granted', id: grant.id, by: grant.by })
    }
    const approval = this.#byKey.get(key) ?? this.#open(call, key, sha)
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#timeout(approval, waiter), call.timeoutMs)
      timer.unref()
      // An agent that gave up must not be the call an approval releases: its identical retry is.
      const gone = (): void => this.#timeout(approval, waiter)
      const waiter = (verdict: Verdict): void => {
        clearTimeout(timer)
        call.signal?.removeEventListener('abort', gone)
        resolve(verdict)
      }
      approval.waiters.push(waiter)
      call.signal?.addEventListener('abort', gone, { once: true })
    })
  }

  /**
   * Approves or denies. `sha256`, when given (an operator's command), must be the held body's: a command for one
   * request never releases another.
   */
  decide (id: string, decision: 'approve' | 'deny', by: string, reason?: string, sha256?: string): DecideResult {
    this.#sweep()
    const approval = this.#byId.get(id)
    if (approval === undefined) return 'unknown'
    if (sha256 !== undefined && sha256 !== approval.requested.body_sha256) return 'hash_mismatch'
    this.#byId.delete(id)
    this.#byKey.delete(approval.key)
    const kind = decision === 'approve' ? 'granted' : 'denied'
    this.#emit(approval, `approval.${kind}`, { by, ...(reason === undefined ? {} : { reason }) })
    const waiters = approval.waiters.splice(0)
    if (kind === 'denied') {
      for (const w of waiters) w({ kind, id, by, ...(reason === undefined ? {} : { reason }) })
      return 'decided'
    }
    const first = waiters.shift()
    if (first === undefined) this.#grants.set(approval.key, { id, by, until: this.#now() + approval.validForMs })
    else first({ kind, id, by })
    // One approval lets one call through: identical calls that waited beside it are refused, never sent.
    for (const w of waiters) w({ kind: 'denied', id, by, reason: 'this approval was used by an identical call' })
    return 'decided'
  }

  /** The approvals still open: waiting calls, and timed-out ones that an approval would still let through. */
  list (): PendingView[] {
    this.#sweep()
    return [...this.#byId.values()].map((a) => ({ ...a.requested, state: a.timedOut ? 'timed_out' : 'waiting' }))
  }

  #open (call: HeldCall, key: string, sha: string): Approval {
    const at = this.#now()
    const id = `apr_${randomBytes(12).toString('base64url')}`
    const requested: ApprovalRequested = {
      event: 'approval.requested',
      id,
      tool: call.tool,
      instance: call.instance,
      body_sha256: sha,
      method: call.method,
      host: call.host,
      ...call.shown,
      timeout_at: new Date(at + call.timeoutMs).toISOString(),
    }
    const approval: Approval = {
      requested,
      key,
      at,
      keepUntil: at + call.timeoutMs + call.validForMs,
      validForMs: call.validForMs,
      waiters: [],
      timedOut: false,
    }
    this.#byId.set(id, approval)
    this.#byKey.set(key, approval)
    this.#audit.emit(requested)
    for (const listener of this.#published) listener(requested)
    void call.notify?.(requested).catch(() => {})
    return approval
  }

  #timeout (approval: Approval, waiter: (verdict: Verdict) => void): void {
    const i = approval.waiters.indexOf(waiter)
    if (i === -1) return
    approval.waiters.splice(i, 1)
    waiter({ kind: 'timeout', id: approval.requested.id })
    if (approval.waiters.length > 0 || approval.timedOut) return
    approval.timedOut = true
    this.#emit(approval, 'approval.expired', {})
  }

  #emit (approval: Approval, event: ApprovalDecided['event'], extra: Pick<ApprovalDecided, 'by' | 'reason'>): void {
    const { id, tool, instance, body_sha256 } = approval.requested
    const wait = Math.round(this.#now() - approval.at)
    this.#audit.emit({
      event,
      id,
      tool,
      instance,
      body_sha256,
      ...extra,
      wait_ms: wait,
      ...(approval.timedOut ? { after_timeout: true } : {}),
    })
  }

  /** Forgets approvals past their use: undecided ones after timeout + valid_for, unused grants after valid_for. */
  #sweep (): void {
    const now = this.#now()
    for (const [id, a] of this.#byId) {
      if (a.waiters.length === 0 && a.timedOut && a.keepUntil <= now) {
        this.#byId.delete(id)
        this.#byKey.delete(a.key)
      }
    }
    for (const [key, g] of this.#grants) if (g.until <= now) this.#grants.delete(key)
  }
}
