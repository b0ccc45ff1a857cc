import { inspect } from 'node:util'
import { createHash } from 'node:crypto'

const REDACTED = '[REDACTED]'

/**
 * A credential value. It prints as [REDACTED] through every path a value can leak by accident
 * (JSON.stringify, util.inspect, template strings, pino); `reveal()` is the one explicit way out,
 * called only where the credential is injected into an upstream request.
 */
export class Secret {
  readonly #value: string
  constructor (value: string) { this.#value = value }
  reveal (): string { return this.#value }
  /** First 16 hex digits of SHA-256: safe to log and compare. */
  fingerprint (): string { return createHash('sha256').update(this.#value).digest('hex').slice(0, 16) }
  equals (other: Secret): boolean { return other.#value === this.#value }
  toString (): string { return REDACTED }
  toJSON (): string { return REDACTED }
  [inspect.custom] (): string { return REDACTED }
}
