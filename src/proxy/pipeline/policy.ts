import { SidekeyError } from '../../errors.js'
import type { ToolConfig } from '../../config/schema.js'
import type { Tool } from '../router.js'
import type { Span } from '../../tracing/index.js'
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
  return refusal === undefined
    ? undefined
    : { error: refusal.error, outcome: 'method_denied', headers: refusal.headers }
}

/** A tool locked by fleet control is refused before its credential is touched. */
export const notLocked: PolicyStep = (ctx) => {
  if (ctx.rt.locks.lockOf(ctx.tool.name) === undefined) return undefined
  const error = new SidekeyError('SIDEKEY_TOOL_LOCKED', 'this tool is locked by fleet control',
    { expose: false, details: { tool: ctx.tool.name } })
  return { error, outcome: 'locked' }
}

/** `require_placeholder`: only calls that carried the placeholder (and nothing else) where the credential goes. */
export const placeholderPresent: PolicyStep = (ctx) => {
  if (!ctx.tool.config.require_placeholder || ctx.placeholder === 'stripped') return undefined
  const message = 'this tool only accepts calls carrying the placeholder where the credential goes'
  const error = new SidekeyError('SIDEKEY_PLACEHOLDER_REQUIRED', message, { details: { tool: ctx.tool.name } })
  return { error, outcome: 'placeholder_required' }
}

/** The policy every routed request passes, in order. New rules are new steps here, never branches in the handler. */
export const POLICY: readonly PolicyStep[] = [
  methodAllowed, notLocked, placeholderPresent, mcpAllowed, approvalGiven, withinBudget,
]

/** Steps that only a tool configured for them can meet: left out of every other tool's policy. */
const CONFIGURED: ReadonlyMap<PolicyStep, (config: Readonly<ToolConfig>) => boolean> = new Map([
  [mcpAllowed, (config: Readonly<ToolConfig>) => config.mcp !== undefined],
  [approvalGiven, (config: Readonly<ToolConfig>) => config.approve !== undefined],
  [withinBudget, (config: Readonly<ToolConfig>) => config.budget !== undefined],
])

const policies = new WeakMap<Tool, readonly PolicyStep[]>()

/**
 * The steps of POLICY that apply to `tool`, decided once per tool (a reload builds new tools): a call to a tool with
 * no `mcp:`, `approve:` or `budget:` does not pass through those steps, nor their spans.
 */
export function policyOf (tool: Tool): readonly PolicyStep[] {
  let steps = policies.get(tool)
  if (steps === undefined) {
    steps = POLICY.filter((step) => CONFIGURED.get(step)?.(tool.config) ?? true)
    policies.set(tool, steps)
  }
  return steps
}

/**
 * Runs the steps in order; the first refusal ends the request. Answers at once while every step does (most calls):
 * a promise only from the first step that waits.
 */
export function firstRefusal (ctx: RoutedContext, steps: readonly PolicyStep[], from = 0):
Refusal | undefined | Promise<Refusal | undefined> {
  for (let i = from; i < steps.length; i++) {
    const step = steps[i]!
    // A span per step, named by its function (`approvalGiven`, `withinBudget`): where a held call's time went.
    const span = ctx.span.child(step.name)
    const verdict = step(ctx)
    if (verdict instanceof Promise) {
      return verdict.then((refusal) => {
        ended(span, refusal)
        return refusal ?? firstRefusal(ctx, steps, i + 1)
      })
    }
    ended(span, verdict)
    if (verdict !== undefined) return verdict
  }
  return undefined
}

function ended (span: Span, refusal: Refusal | undefined): void {
  if (refusal !== undefined) span.set('sidekey.outcome', refusal.outcome)
  span.end()
}
