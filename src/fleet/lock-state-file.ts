import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import { writeFileAtomic } from '../util/atomic-write.js'
import { CLOCK_SKEW_MS, MAX_COMMAND_LIFETIME_S, verifyCommand, type VerifiedCommand } from './command.js'
import type { OperatorPublicKey } from './keys.js'
import type { LockTable } from './locks.js'
import type { ReplayCache } from './replay.js'

interface StateFile { version: 1, commands: Array<{ jws: string, stored_at: number, revision: number }> }

/**
 * The fleet's `state_file`: the lock commands in force (the JWS themselves, re-verified on load), so a restart
 * refuses a locked tool from its first request, broker or not.
 */
export class LockStateFile {
  readonly #stateFile: string
  readonly #locks: LockTable
  readonly #logger: Logger
  /** Bucket revisions of the lock commands in force (the state file keeps them for the replay check). */
  #revisions = new Map<string, number>()
  #saving: Promise<void> | undefined
  #saveAgain = false

  constructor (stateFile: string, locks: LockTable, logger: Logger) {
    this.#stateFile = stateFile
    this.#locks = locks
    this.#logger = logger
  }

  /** The write in flight, if any (close waits on it). */
  get saving (): Promise<void> | undefined { return this.#saving }

  /** Loads the cached lock commands; each is verified again, so the file cannot grant anything a key did not sign. */
  async restore (
    keys: ReadonlyMap<string, OperatorPublicKey>, instance: string, seen: ReplayCache, now: number
  ): Promise<void> {
    let state: StateFile
    try {
      state = JSON.parse(await readFile(this.#stateFile, 'utf8')) as StateFile
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#logger.warn({ file: this.#stateFile }, 'fleet state file unreadable; waiting for the bucket')
      }
      return
    }
    for (const c of Array.isArray(state.commands) ? state.commands : []) {
      if (typeof c?.jws !== 'string' || typeof c.stored_at !== 'number') continue
      const v = await verifyCommand(c.jws, keys, c.stored_at, now)
      if (!v.ok || (v.command.action !== 'lock' && v.command.action !== 'unlock')) continue
      if (v.command.instance !== '*' && v.command.instance !== instance) continue
      const until = Math.max(v.command.exp * 1000 + CLOCK_SKEW_MS, now + MAX_COMMAND_LIFETIME_S * 1000)
      seen.add(v.command.jti, c.revision, until, now)
      this.#locks.apply(v.command)
      this.#revisions.set(v.command.jti, c.revision)
    }
    const locks = this.#locks.active()
    if (locks.length > 0) {
      this.#logger.info({ locks: locks.map((l) => l.tool), file: this.#stateFile },
        'fleet locks restored from the state file')
    }
  }

  /** Writes the lock commands in force to the state file; coalesced, atomic. */
  save (revision: number, cmd: VerifiedCommand): void {
    this.#revisions.set(cmd.jti, revision)
    if (this.#saving !== undefined) {
      this.#saveAgain = true
      return
    }
    this.#saving = (async () => {
      do {
        this.#saveAgain = false
        const commands = this.#locks.commands()
        this.#revisions = new Map(commands.map((c) => [c.jti, this.#revisions.get(c.jti) ?? 0]))
        const state: StateFile = {
          version: 1,
          commands: commands.map((c) => ({ jws: c.jws, stored_at: c.storedAt, revision: this.#revisions.get(c.jti)! })),
        }
        try {
          await writeFileAtomic(this.#stateFile, JSON.stringify(state) + '\n', 0o600)
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error'
          this.#logger.warn({ file: this.#stateFile, err: { code } },
            'fleet state file not written: a restart relies on the bucket')
        }
      } while (this.#saveAgain)
    })().finally(() => { this.#saving = undefined })
  }
}
