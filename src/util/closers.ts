/**
 * What a start has built that must be released, closed in the reverse order of creation: by every failure of the
 * start and by shutdown alike, so no path can forget a part (the upstream pool, the tracer, the trail's last
 * checkpoint). Each closes once; a failing close does not keep the rest open.
 */
export class Closers {
  readonly #stack: Array<() => unknown> = []

  add (close: () => unknown): void {
    this.#stack.push(close)
  }

  async close (): Promise<void> {
    for (let close = this.#stack.pop(); close !== undefined; close = this.#stack.pop()) {
      try {
        await close()
      } catch {
        // Already shutting down: the next part is released whatever this one did.
      }
    }
  }
}
