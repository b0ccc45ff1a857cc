import { createHash, hash, randomBytes } from 'node:crypto'

/**
 * The hash chain over sidekey's log stream. Every line a chained logger writes (audit events and operational lines
 * alike, so that no line can go missing unnoticed) ends with three fields appended by pino's `streamWrite` hook,
 * after the line was serialised and before it reaches the destination:
 *
 *   {…the line as pino made it…,"run_id":"R","seq":N,"chain":"C"}
 *
 * - `run_id`: random per process run (per AuditChain); `seq`: 1, 2, … within the run.
 * - `chain` = base64url(SHA-256(P ‖ U)), where P is the previous line's `chain` as its 43 ASCII characters (empty
 *   for seq 1) and U is this line's exact bytes with `,"chain":"C"` removed: everything up to and including
 *   `"seq":N`, then `}`. The line is UTF-8; the newline is not part of it.
 *
 * A verifier therefore needs no JSON re-serialisation: it checks that a line ends with `,"chain":"` + 43 base64url
 * characters + `"}`, drops those 55 bytes, appends `}`, and hashes. Keys and values inside the line are never
 * re-ordered or re-encoded, so the line must reach the verifier byte for byte.
 *
 * @example
 *   const chain = new AuditChain()
 *   const logger = pino({ hooks: { streamWrite: chain.seal } }, destination)
 */

/** `,"chain":"` + 43 base64url characters + `"}`. */
export const SEAL_SUFFIX_LENGTH = 55
export const CHAIN_LENGTH = 43
const CHAIN_KEY = ',"chain":"'

/** `chain` of a line from the previous line's chain and this line's bytes without the field (see above). */
export function chainDigest (previous: string, unsealed: string | Uint8Array): string {
  if (typeof unsealed === 'string') return hash('sha256', previous + unsealed, 'base64url')
  return createHash('sha256').update(previous).update(unsealed).digest('base64url')
}

export class AuditChain {
  readonly runId: string
  readonly #tail: string
  #seq = 0
  #last = ''
  #sinceCheckpoint = 0
  #every = Infinity
  #onDue: (() => void) | undefined
  #dueScheduled = false

  constructor (runId: string = randomBytes(16).toString('base64url')) {
    this.runId = runId
    this.#tail = `,"run_id":${JSON.stringify(runId)},"seq":`
  }

  /** The seq of the last line written (0 before the first). */
  get seq (): number { return this.#seq }
  /** The chain of the last line written ('' before the first). */
  get last (): string { return this.#last }
  /** Lines written since the last `checkpointed()`. */
  get sinceCheckpoint (): number { return this.#sinceCheckpoint }

  /**
   * pino's `hooks.streamWrite`: seals one serialised line (`{…}\n`). On the hot path: one SHA-256 and three string
   * joins, no JSON work.
   */
  readonly seal = (line: string): string => {
    // pino ends every line with `}` and its newline; anything else (never seen) is passed on unsealed.
    if (line.charCodeAt(line.length - 1) !== 10 || line.charCodeAt(line.length - 2) !== 125) return line
    const body = line.slice(0, -2) + this.#tail + String(++this.#seq)
    const chain = chainDigest(this.#last, body + '}')
    this.#last = chain
    if (++this.#sinceCheckpoint >= this.#every && !this.#dueScheduled) {
      this.#dueScheduled = true
      // Never write from inside a write: the checkpoint follows on the next turn.
      setImmediate(() => { this.#dueScheduled = false; this.#onDue?.() })
    }
    return body + CHAIN_KEY + chain + '"}\n'
  }

  /** Calls `onDue` (on a later turn) once `events` lines were written since the last checkpoint. */
  checkpointEvery (events: number, onDue: () => void): void {
    this.#every = events
    this.#onDue = onDue
  }

  /** The checkpoint line itself is not counted toward the next one. */
  checkpointed (): void {
    this.#sinceCheckpoint = 0
  }
}
