import type { KV } from '@nats-io/kv'
import type { ApprovalDesk } from '../approvals/index.js'
import type { RejectReason, VerifiedCommand } from './command.js'

/** Where a sidecar publishes each call held for approval: `sidekey fleet approvals` lists them across the fleet. */
export function approvalKey (id: string): string {
  return `apr.${id}`
}

/** Puts each new `approval.requested` in the bucket while connected (best effort: the local CLI still has it). */
export function publishApprovals (desk: ApprovalDesk | undefined, kv: () => KV | undefined): void {
  desk?.onRequested((event) => {
    void kv()?.put(approvalKey(event.id), JSON.stringify(event)).catch(() => {})
  })
}

/**
 * Applies a verified approve/deny command: it must name an open approval of this sidecar, of the command's tool,
 * with the held body's hash. Anything else is refused (an approval already decided, replayed onto another call).
 */
export function decideApproval (desk: ApprovalDesk | undefined, cmd: VerifiedCommand): RejectReason | undefined {
  const open = desk?.list().find((a) => a.id === cmd.approval)
  if (desk === undefined || open === undefined) return 'unknown_approval'
  if (open.tool !== cmd.tool || open.body_sha256 !== cmd.body_sha256) return 'approval_mismatch'
  const decision = cmd.action === 'approve' ? 'approve' : 'deny'
  const decided = desk.decide(open.id, decision, cmd.kid, cmd.reason, cmd.body_sha256)
  return decided === 'decided' ? undefined : decided === 'hash_mismatch' ? 'approval_mismatch' : 'unknown_approval'
}
