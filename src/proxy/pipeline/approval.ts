import type { ServerResponse } from 'node:http'
import { SidekeyError, type ErrorCode } from '../../errors.js'
import { approvalAnswer, deliverWebhook, needsApproval, previewOf, type Verdict } from '../../approvals/index.js'
import { auditPath } from '../../audit/log.js'
import { readWholeBody } from '../../util/whole-body.js'
import { pathWithoutQuery } from '../../util/path.js'
import type { Refusal, RoutedContext } from './context.js'
import type { PolicyStep } from './policy.js'

const DEFAULT_TIMEOUT_MS = 120_000
const DEFAULT_VALID_FOR_MS = 900_000
/** `credential.used`'s outcome for each refusal of this step. */
const OUTCOMES: Partial<Record<ErrorCode, string>> = {
  SIDEKEY_APPROVAL_DENIED: 'approval_denied',
  SIDEKEY_APPROVAL_TIMEOUT: 'approval_timeout',
  SIDEKEY_APPROVAL_BODY_TOO_LARGE: 'approval_body_too_large',
}

/**
 * A call matching the tool's `approve:` rules waits here, its body held, until it is approved (then it goes on with
 * the credential, sending the very bytes that were approved), denied, or not decided in time. Every transport
 * (h1, h2, WebSocket upgrade, MCP, a whole MCP batch) comes through this step before any credential is attached.
 */
export const approvalGiven: PolicyStep = (ctx) => {
  const config = ctx.tool.config
  if (config.approve === undefined) return undefined
  const shape = { method: ctx.method, path: pathWithoutQuery(ctx.path), mcp: ctx.mcp?.call }
  // Answered at once for every call that needs no approval: no promise, no turn of the event loop.
  return needsApproval(config, shape) ? held(ctx) : undefined
}

/** Holds the call, with its body, until it is decided or its time is up. */
async function held (ctx: RoutedContext): Promise<Refusal | undefined> {
  const config = ctx.tool.config
  const limit = ctx.rt.config.limits.replay_body_bytes
  const body = ctx.mcp?.body ?? (hasBody(ctx) ? await readWholeBody(ctx.req, limit) : Buffer.alloc(0))
  if (body === undefined) {
    const message = 'a call waiting for approval is held whole, and this body is larger than ' +
      `limits.replay_body_bytes (${limit})`
    return refusal(ctx, 'SIDEKEY_APPROVAL_BODY_TOO_LARGE', message, {}, undefined)
  }
  if (ctx.mcp === undefined) ctx.heldBody = body
  const desk = ctx.rt.approvals
  const left = new AbortController()
  ctx.res.once('close', () => left.abort())
  const settings = config.approval
  const verdict = await desk.hold({
    tool: ctx.tool.name,
    instance: ctx.rt.config.instance_id,
    method: ctx.method,
    host: ctx.target.host,
    target: ctx.path,
    body,
    signal: left.signal,
    timeoutMs: settings?.timeout ?? DEFAULT_TIMEOUT_MS,
    validForMs: settings?.valid_for ?? DEFAULT_VALID_FOR_MS,
    shown: {
      path: auditPath(ctx.path),
      body_bytes: body.length,
      preview: previewOf(body),
      request_id: ctx.requestId,
      client: ctx.client,
      ...(ctx.task === undefined ? {} : { task: ctx.task }),
      ...(ctx.mcp?.call === undefined ? {} : { mcp: ctx.mcp.call }),
    },
    ...(settings?.webhook === undefined
      ? {}
      : {
          notify: (event) => deliverWebhook(settings.webhook!, event, ctx.rt.config.resolve, ctx.rt.audit),
        }),
  })
  return verdict.kind === 'granted' ? undefined : refused(ctx, verdict)
}

/** A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3): a WebSocket upgrade. */
function hasBody (ctx: RoutedContext): boolean {
  return ctx.req.headers['content-length'] !== undefined || ctx.req.headers['transfer-encoding'] !== undefined
}

function refused (ctx: RoutedContext, verdict: Exclude<Verdict, { kind: 'granted' }>): Refusal {
  const approval = verdict.id
  if (verdict.kind === 'timeout') {
    const message = `this call waited for approval ${approval} and none came in time; once it is approved, ` +
      'send it again unchanged'
    const detail = `approval ${approval} not decided in time`
    return refusal(ctx, 'SIDEKEY_APPROVAL_TIMEOUT', message, { approval, detail })
  }
  const why = verdict.reason === undefined ? '' : `: ${verdict.reason}`
  const message = `approval ${approval} was denied by ${verdict.by}${why}; do not retry this call`
  const detail = `approval ${approval} denied`
  return refusal(ctx, 'SIDEKEY_APPROVAL_DENIED', message, { approval, by: verdict.by, detail })
}

function refusal (ctx: RoutedContext, code: ErrorCode, message: string, details: Record<string, string>,
  mcpText: string | undefined = message): Refusal {
  const error = new SidekeyError(code, message, { details: { tool: ctx.tool.name, ...details } })
  const outcome = OUTCOMES[code]!
  const body = ctx.mcp?.body
  if (body === undefined || mcpText === undefined) return { error, outcome }
  const text = `sidekey: ${mcpText}`
  return { error, outcome, answer: (res, requestId) => sendJson(res, approvalAnswer(body, text), requestId, outcome) }
}

function sendJson (res: ServerResponse, body: string, requestId: string, reason: string): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-sidekey-request-id': requestId,
    'proxy-status': `sidekey; error=http_request_denied; details="${reason}"`,
  })
  res.end(body)
}
