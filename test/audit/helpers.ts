import { Writable } from 'node:stream'
import type { Clock, Timer } from '../../src/util/clock.js'
import type { CredentialUsed, EgressDenied } from '../../src/audit/events.js'
import { createLogger } from '../../src/audit/log.js'
import type { Logger } from 'pino'

/** A logger writing into memory, synchronously, so a test reads every line right after emitting. */
export function memoryLogger (level = 'info', opts: { chain?: boolean } = {}): { logger: Logger, lines: () => string[], records: () => Array<Record<string, unknown>>, text: () => string } {
  const chunks: string[] = []
  const destination = new Writable({ write (chunk, _enc, cb) { chunks.push(String(chunk)); cb() } })
  const logger = createLogger({ level, destination, ...opts })
  const text = (): string => chunks.join('')
  const lines = (): string[] => text().split('\n').filter((l) => l !== '')
  return { logger, lines, text, records: () => lines().map((l) => JSON.parse(l) as Record<string, unknown>) }
}

/** Time moves only when the test says; due timers run synchronously in `advance`. */
export class ManualClock implements Clock {
  #now: number
  #timers = new Map<Timer, { at: number, fn: () => void }>()
  constructor (start = Date.parse('2026-01-01T00:00:00.000Z')) { this.#now = start }
  now (): number { return this.#now }
  setTimeout (fn: () => void, ms: number): Timer {
    const t: Timer = { unref: () => t }
    this.#timers.set(t, { at: this.#now + ms, fn })
    return t
  }

  clearTimeout (t: Timer): void { this.#timers.delete(t) }
  get pending (): number { return this.#timers.size }
  advance (ms: number): void {
    const until = this.#now + ms
    for (;;) {
      let next: [Timer, { at: number, fn: () => void }] | undefined
      for (const e of this.#timers) if (e[1].at <= until && (next === undefined || e[1].at < next[1].at)) next = e
      if (next === undefined) break
      this.#timers.delete(next[0])
      this.#now = next[1].at
      next[1].fn()
    }
    this.#now = until
  }
}

let seq = 0
export function used (over: Partial<CredentialUsed> = {}): CredentialUsed {
  return {
    event: 'credential.used',
    tool: 'github',
    credential_id: 'cred-1',
    method: 'GET',
    host: 'api.github.com',
    path: '/repos/acme/app',
    status: 200,
    duration_ms: 12,
    client: '127.0.0.1:50000',
    placeholder: 'stripped',
    request_id: `req-${++seq}`,
    ...over,
  }
}

export function denied (over: Partial<EgressDenied> = {}): EgressDenied {
  return { event: 'egress.denied', host: 'evil.test', port: 443, reason: 'no_tool', ...over }
}
