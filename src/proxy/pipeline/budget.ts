import { BudgetCharge, type Verdict } from '../../budget/index.js'
import { SidekeyError } from '../../errors.js'
import type { Refusal, RoutedContext } from './context.js'
import type { PolicyStep } from './policy.js'

/**
 * A tool's `budget:` (src/budget/): a call that would start over one is refused 429 with Retry-After, before its
 * credential is touched and without reaching the upstream. An admitted call's answer is watched for its token
 * usage (`ctx.budget`, settled by forward.ts).
 */
export const withinBudget: PolicyStep = (ctx) => {
  const verdict = ctx.rt.budgets?.admit(ctx.tool.name, ctx.task)
  return verdict instanceof Promise ? verdict.then((v) => judged(ctx, v)) : judged(ctx, verdict)
}

function judged (ctx: RoutedContext, verdict: Verdict): Refusal | undefined {
  if (verdict === undefined) return undefined
  if (verdict instanceof BudgetCharge) {
    ctx.budget = verdict
    return undefined
  }
  const tool = ctx.tool.name
  if (verdict.first) {
    // After the request's own event (the refusal is answered and audited first).
    setImmediate(() => {
      const detail = `${verdict.budget} ${exhaustedWords(verdict.why)}`
      ctx.later({ event: 'anomaly', kind: 'budget_exhausted', tool, detail })
    })
  }
  const message = verdict.why === 'exhausted'
    ? `this tool's budget ${verdict.budget} is spent; retry after ${verdict.retryAfterSeconds} s`
    : `this tool's fleet budget ${verdict.budget} cannot be counted while the fleet broker is unreachable`
  const details = { tool, budget: verdict.budget, retry_after: verdict.retryAfterSeconds }
  return {
    error: new SidekeyError('SIDEKEY_BUDGET_EXHAUSTED', message, { details }),
    outcome: 'budget_exhausted',
    headers: { 'retry-after': String(verdict.retryAfterSeconds) },
    audit: { budget: verdict.budget },
  }
}

function exhaustedWords (why: 'exhausted' | 'unavailable'): string {
  return why === 'exhausted' ? 'spent' : 'uncountable: fleet broker unreachable'
}
