import type { Logger } from 'pino'
import type { KV } from '@nats-io/kv'
import type { AuditSink, FleetCommand } from '../audit/events.js'
import type { Clock } from '../util/clock.js'
import { ackDone, KEYS, type Ack } from './bucket.js'
import type { VerifiedCommand } from './command.js'
import type { RevokeResult } from './revoke-result.js'

export interface CommandOutcomeDeps {
  readonly audit: AuditSink
  readonly logger: Logger
  readonly clock: Clock
  readonly instance: string
  /** The bucket, or undefined while not connected or once closed: no acknowledgement is written then. */
  readonly kv: () => KV | undefined
}

/** What became of each fleet command: a `fleet.command` audit line and an acknowledgement in the bucket. */
export class CommandOutcome {
  readonly #d: CommandOutcomeDeps

  constructor (deps: CommandOutcomeDeps) {
    this.#d = deps
  }

  /** Audits and acknowledges an outcome; `detail` is the error code or the reason a revoke revoked nothing. */
  done (cmd: VerifiedCommand, result: RevokeResult['result'] | 'not_configured', detail?: string): void {
    const appliedAt = this.#d.clock.now()
    this.event(cmd, result === 'not_configured' ? 'applied' : result, detail, appliedAt)
    const answer = result === 'failed' || result === 'not_revocable' ? `${result}: ${detail ?? 'error'}` : result
    this.#ack(cmd.jti, answer, appliedAt, appliedAt - cmd.storedAt)
  }

  event (cmd: VerifiedCommand, result: FleetCommand['result'], error?: string, appliedAt?: number): void {
    this.#d.audit.emit({
      event: 'fleet.command',
      result,
      action: cmd.action,
      tool: cmd.tool,
      instance: cmd.instance,
      jti: cmd.jti,
      actor: cmd.actor,
      kid: cmd.kid,
      reason: cmd.reason,
      ...(appliedAt === undefined ? {} : { lag_ms: Math.max(0, appliedAt - cmd.iat * 1000) }),
      ...(error === undefined ? {} : { error }),
    })
  }

  reject (reason: string, claims: Partial<VerifiedCommand>, kid: string | undefined, keyJti: string): void {
    this.#d.audit.emit({
      event: 'fleet.command',
      result: 'rejected',
      error: reason,
      ...pick(claims, ['action', 'tool', 'instance', 'actor']),
      jti: keyJti,
      ...(kid === undefined ? {} : { kid }),
    })
    const tool = typeof claims.tool === 'string' ? claims.tool : null
    this.#d.audit.emit({ event: 'anomaly', kind: 'fleet_command_rejected', tool, detail: `${reason}: cmd.${keyJti}` })
    // The answer is the outcome alone, under the key the command was stored at: nothing else of what the writer
    // chose. A replay gets none: this jti was answered when it first came, and that answer stays true.
    if (reason === 'replayed' || !/^[A-Za-z0-9_-]{1,64}$/.test(keyJti)) return
    this.#ack(keyJti, `rejected: ${reason}`, this.#d.clock.now())
  }

  #ack (jti: string, result: string, appliedAt: number, lagMs?: number): void {
    const kv = this.#d.kv()
    if (kv === undefined) return
    const ack: Ack = {
      instance: this.#d.instance,
      jti,
      applied_at: new Date(appliedAt).toISOString(),
      result,
      ...(lagMs === undefined ? {} : { lag_ms: Math.max(0, lagMs) }),
    }
    kv.put(KEYS.ack(jti, this.#d.instance), JSON.stringify(ack)).catch((err: unknown) => {
      const code = (err as { code?: string }).code ?? 'error'
      this.#d.logger.warn({ jti, err: { code } }, 'fleet: acknowledgement not written')
    })
    if (!ackDone(result)) this.#d.logger.warn({ jti, result }, 'fleet command not applied')
  }
}

function pick<T extends object, K extends keyof T> (o: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {}
  for (const k of keys) if (typeof o[k] === 'string') out[k] = o[k]
  return out
}
