/**
 * Approval rules at the credential boundary: a call matching a tool's `approve:` rules waits, body held, until a
 * human (admin API, `sidekey approvals`) or an operator's signed command approves this exact call. The request
 * path asks `needsApproval`, then `ApprovalDesk.hold` and waits for its verdict.
 */
export { ApprovalDesk, type DecideResult, type HeldCall, type PendingView, type Verdict } from './desk.js'
export { needsApproval } from './rules.js'
export { previewOf } from './preview.js'
export { deliverWebhook } from './webhook.js'
export { approvalAnswer } from './mcp-answer.js'
