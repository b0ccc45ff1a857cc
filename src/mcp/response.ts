import type { McpCheck } from './check.js'
import { filterListAnswers } from './list-filter.js'
import type { McpPolicy } from './policy.js'
import { SseFilter } from './sse-filter.js'

/** Rewrites a body as it streams (structurally proxy/upstream/upstream.ts's BodyFilter). */
export interface ByteFilter {
  push (chunk: Buffer): Buffer
  end (): Buffer
}

/**
 * The largest list answer (a JSON body, or one SSE event) read to be filtered. A larger one is sent unfiltered: the
 * model then sees entries it cannot use, as the calls to them are still refused on the way in.
 */
export const MAX_LIST_ANSWER_BYTES = 8 * 1024 * 1024

/**
 * The filter for the answer to a checked MCP request, or undefined when it needs none: only answers to list
 * requests of a kind the policy restricts are rewritten, as one JSON body or in their SSE event.
 */
export function mcpResponseFilter (
  policy: McpPolicy, check: McpCheck, contentType: string | undefined
): ByteFilter | undefined {
  if (check.lists.length === 0) return undefined
  const rewrite = (text: string): string | undefined => {
    let message: unknown
    try {
      message = JSON.parse(text)
    } catch {
      return undefined
    }
    const filtered = filterListAnswers(policy, check.lists, message)
    return filtered === undefined ? undefined : JSON.stringify(filtered)
  }
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  if (type === 'text/event-stream') return new SseFilter(rewrite, MAX_LIST_ANSWER_BYTES)
  if (type === 'application/json') return new WholeJsonFilter(rewrite, MAX_LIST_ANSWER_BYTES)
  return undefined
}

/** A JSON answer held whole (up to `max` bytes, then passed on unread) and rewritten at its end. */
class WholeJsonFilter implements ByteFilter {
  readonly #rewrite: (text: string) => string | undefined
  readonly #max: number
  #held: Buffer[] | undefined = []
  #size = 0

  constructor (rewrite: (text: string) => string | undefined, max: number) {
    this.#rewrite = rewrite
    this.#max = max
  }

  push (chunk: Buffer): Buffer {
    if (this.#held === undefined) return chunk
    this.#held.push(chunk)
    this.#size += chunk.length
    if (this.#size <= this.#max) return EMPTY
    const all = Buffer.concat(this.#held)
    this.#held = undefined
    return all
  }

  end (): Buffer {
    if (this.#held === undefined) return EMPTY
    const body = Buffer.concat(this.#held)
    this.#held = undefined
    const rewritten = this.#rewrite(body.toString('utf8'))
    return rewritten === undefined ? body : Buffer.from(rewritten)
  }
}

const EMPTY = Buffer.alloc(0)
