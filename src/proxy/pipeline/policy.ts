import { SidekeyError } from '../../errors.js'
import { methodRefusal } from '../methods.js'
import type { Refusal, RoutedContext } from './context.js'
import { mcpAllowed } from './mcp.js'
import { approvalGiven } from './approval.js'
import { withinBudget } from './budget.js'

/**
 * A policy step: looks at a routed request before any credential is attached, and refuses it or lets it go on.
 * A step that needs to wait (a body to read, a decision to come) returns a promise; most answer at once.
 */
export type PolicyStep = (ctx: RoutedContext) => Refusal | undefined | Promise<Refusal | undefined>

/** `match.methods`, TRACE and CONNECT, and method-override headers: the one place the method rule lives. */
export const methodAllowed: PolicyStep = (ctx) => {
  const refusal = methodRefusal(ctx.tool, ctx.method, ctx.req.rawHeaders)
  return refusal === undefined ? undefined : { error: refusal.error, outcome: 'method_denied', headers: refusal.headers }
}

/** A tool locked by fleet control is refused before its credential is touched. */
export const notLocked: PolicyStep = (ctx) => {
  if (ctx.rt.locks.lockOf(ctx.tool.name) === undefined) return undefined
  return { error: new SidekeyError('SIDEKEY_TOOL_LOCKED', 'this tool is locked by fleet control', { expose: false, details: { tool: ctx.tool.name } }), outcome: 'locked' }
}

/** `require_placeholder`: only calls that carried the placeholder (and nothing else) where the credential goes. */
export const placeholderPresent: PolicyStep = (ctx) => {
  if (!ctx.tool.config.require_placeholder || ctx.placeholder === 'stripped') return undefined
  const message = 'this tool only accepts calls carrying the placeholder where the credential goes'
  return { error: new SidekeyError('SIDEKEY_PLACEHOLDER_REQUIRED', message, { details: { tool: ctx.tool.name } }), outcome: 'placeholder_required' }
}

/** The policy every routed request passes, in order. New rules are new steps here, never branches in the handler. */
export const POLICY: readonly PolicyStep[] = [methodAllowed, notLocked, placeholderPresent, mcpAllowed, approvalGiven, withinBudget]

/** Runs the steps in order; the first refusal ends the request. */
export async function firstRefusal (ctx: RoutedContext, steps: readonly PolicyStep[]): Promise<Refusal | undefined> {
  for (const step of steps) {
    // A span per step, named by its function (`approvalGiven`, `withinBudget`): where a held call's time went.
    const span = ctx.span.child(step.name)
    const verdict = step(ctx)
    const refusal = verdict instanceof Promise ? await verdict : verdict
    if (refusal !== undefined) span.set('sidekey.outcome', refusal.outcome)
    span.end()
    if (refusal !== undefined) return refusal
  }
  return undefined
}
