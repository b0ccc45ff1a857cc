/**
 * The jtis this process has seen, each kept until its command can no longer verify anyway (exp + skew: a copy
 * stored after that is refused as expired, command.ts). Bounded: past `max` entries the expired ones go first,
 * then the ones closest to expiry. Only commands with a valid operator signature get here, so filling it takes an
 * operator's key.
 */
export class ReplayCache {
  readonly #until = new Map<string, number>()
  readonly #revision = new Map<string, number>()
  readonly #max: number

  constructor (max = 10_000) {
    this.#max = max
  }

  /**
   * Remembers `jti`, stored at bucket `revision`, until `until` (ms). The same revision seen again is the same
   * delivery (a watcher restarted, the state file and the bucket both holding it): `duplicate`. The jti at another
   * revision is the command stored again: `replayed`.
   */
  add (jti: string, revision: number, until: number, now: number): 'new' | 'duplicate' | 'replayed' {
    const held = this.#until.get(jti)
    if (held !== undefined && held > now) return this.#revision.get(jti) === revision ? 'duplicate' : 'replayed'
    if (this.#until.size >= this.#max) this.#prune(now)
    this.#until.set(jti, until)
    this.#revision.set(jti, revision)
    return 'new'
  }

  get size (): number { return this.#until.size }

  #prune (now: number): void {
    for (const [jti, until] of this.#until) if (until <= now) this.#forget(jti)
    if (this.#until.size < this.#max) return
    const byExpiry = [...this.#until].sort((a, b) => a[1] - b[1])
    for (const [jti] of byExpiry.slice(0, this.#until.size - this.#max + 1)) this.#forget(jti)
  }

  #forget (jti: string): void {
    this.#until.delete(jti)
    this.#revision.delete(jti)
  }
}
