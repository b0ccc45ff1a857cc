import type { ListRequest } from './check.js'
import type { McpPolicy } from './policy.js'

/**
 * Rewrites the answers to list requests (`tools/list`, `resources/list`, `prompts/list`) down to the entries the
 * policy allows, so the model is never offered what sidekey would refuse. Everything else in the answer, `nextCursor`
 * included, is kept. Returns undefined when `message` (one answer or a batch of them) answers no list request.
 */
export function filterListAnswers (policy: McpPolicy, lists: readonly ListRequest[], message: unknown): unknown {
  if (Array.isArray(message)) {
    let changed = false
    const out = message.map((m) => {
      const one = filterOne(policy, lists, m)
      if (one === undefined) return m
      changed = true
      return one
    })
    return changed ? out : undefined
  }
  return filterOne(policy, lists, message)
}

function filterOne (policy: McpPolicy, lists: readonly ListRequest[], message: unknown): unknown {
  if (!isObject(message) || !isObject(message.result)) return undefined
  const id = JSON.stringify(message.id)
  const list = lists.find((l) => l.id === id)
  const entries = list === undefined ? undefined : message.result[list.kind]
  if (list === undefined || !Array.isArray(entries)) return undefined
  const allowed = policy[list.kind]!
  const kept = entries.filter((e) =>
    isObject(e) && typeof e[list.field] === 'string' && allowed.allows(e[list.field] as string))
  return { ...message, result: { ...message.result, [list.kind]: kept } }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
