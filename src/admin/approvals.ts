import type { IncomingMessage } from 'node:http'
import type { ApprovalDesk } from '../approvals/index.js'
import { readWholeBody } from '../util/whole-body.js'

/** A decision body is a few words: anything longer is refused unread. */
const MAX_DECISION_BYTES = 4096
const MAX_REASON_CHARS = 500

export interface AdminAnswer { readonly status: number, readonly body: object }

/**
 * `POST /approvals/ID` with `{"decision":"approve"|"deny","reason":"…"}` (the admin token already checked): the
 * decision is the desk's, audited there with `by: admin`.
 */
export async function decideApproval (desk: ApprovalDesk, id: string, req: IncomingMessage): Promise<AdminAnswer> {
  const parsed = await readDecision(req)
  if (parsed === undefined) {
    return { status: 400, body: { error: 'bad_decision', detail: 'send {"decision":"approve"|"deny","reason":"..."}' } }
  }
  const result = desk.decide(id, parsed.decision, 'admin', parsed.reason)
  if (result === 'unknown') return { status: 404, body: { error: 'unknown_approval', id } }
  return { status: 200, body: { id, decision: parsed.decision } }
}

interface Decision { readonly decision: 'approve' | 'deny', readonly reason?: string }

async function readDecision (req: IncomingMessage): Promise<Decision | undefined> {
  const body = await readWholeBody(req, MAX_DECISION_BYTES)
  if (body === undefined) return undefined
  let value: unknown
  try { value = JSON.parse(body.toString('utf8')) } catch { return undefined }
  if (typeof value !== 'object' || value === null) return undefined
  const { decision, reason } = value as { decision?: unknown, reason?: unknown }
  if (decision !== 'approve' && decision !== 'deny') return undefined
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > MAX_REASON_CHARS)) return undefined
  return { decision, ...(reason === undefined ? {} : { reason }) }
}
