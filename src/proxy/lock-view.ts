/** A lock on a tool: who set it, why and when (ISO 8601); `tool` is the tool or `*` (every tool of this instance). */
export interface ToolLock {
  readonly tool: string
  readonly actor: string
  readonly reason: string
  readonly at: string
  readonly jti: string
}

/**
 * What the request path asks before it injects a credential: is this tool locked here? Fleet control (src/fleet/)
 * implements it from signed commands; without a `fleet:` section nothing is ever locked. Synchronous and in memory:
 * a broker outage never reaches a request.
 */
export interface LockView {
  lockOf (tool: string): ToolLock | undefined
}

export const NO_LOCKS: LockView = Object.freeze({ lockOf: () => undefined })
