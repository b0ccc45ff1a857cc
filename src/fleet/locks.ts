import type { LockView, ToolLock } from '../proxy/lock-view.js'
import type { VerifiedCommand } from './command.js'

/**
 * The locks of this instance, derived only from verified lock/unlock commands addressed to it: per tool name (or
 * `*`), the latest command by its signed `iat` wins (ties: the one seen last). `lock --tool '*'` locks every tool;
 * `unlock --tool '*'` lifts every lock set before it; `unlock --tool T` lifts T's own lock, not an instance-wide one.
 * Ordering by the signed `iat`, not by bucket revision, means someone who can write the bucket cannot reorder an old
 * unlock after a newer lock.
 */
export class LockTable implements LockView {
  readonly #latest = new Map<string, VerifiedCommand>()

  /** Records a lock or unlock; returns false when a newer command for the same tool is already in force. */
  apply (cmd: VerifiedCommand): boolean {
    const held = this.#latest.get(cmd.tool)
    if (held !== undefined && held.iat > cmd.iat) return false
    this.#latest.set(cmd.tool, cmd)
    return true
  }

  lockOf (tool: string): ToolLock | undefined {
    const all = this.#latest.get('*')
    if (all?.action === 'lock') return view(all)
    const own = this.#latest.get(tool)
    if (own?.action !== 'lock') return undefined
    if (all !== undefined && all.iat >= own.iat) return undefined
    return view(own)
  }

  /** Active locks, for /status and `fleet status`. */
  active (): ToolLock[] {
    const out: ToolLock[] = []
    for (const [tool, cmd] of this.#latest) {
      if (cmd.action !== 'lock') continue
      if (tool === '*' ? true : this.lockOf(tool)?.jti === cmd.jti) out.push(view(cmd))
    }
    return out.sort((a, b) => a.tool.localeCompare(b.tool))
  }

  /** The commands that make up the state (for the local state file): one per tool name at most. */
  commands (): VerifiedCommand[] {
    return [...this.#latest.values()]
  }
}

function view (cmd: VerifiedCommand): ToolLock {
  const at = new Date(cmd.iat * 1000).toISOString()
  return { tool: cmd.tool, actor: cmd.actor, reason: cmd.reason, at, jti: cmd.jti }
}
