import { randomUUID } from 'node:crypto'
import { Agent } from 'undici'
import type { AuditEvent, AuditSink } from '../../src/audit/events.js'
import { config as configSchema, type Config, type IssuerConfig } from '../../src/config/schema.js'
import { IssuerError } from '../../src/errors.js'
import type { CredentialRequest, IssuedCredential, Issuer, IssuerDeps } from '../../src/credentials/issuer.js'
import { CredentialManager, type CredentialManagerDeps } from '../../src/credentials/manager.js'
import { Secret } from '../../src/util/secret.js'
import { FakeClock } from './fake-clock.js'

export type FakeMode = 'ok' | 'fail' | 'hang' | 'manual'

/**
 * An issuer whose behaviour a test switches at will: answer (`ok`), throw (`fail`), never answer and ignore
 * the abort signal (`hang`), or wait until the test calls `release()` (`manual`). Every token it hands out is
 * kept in `tokens`, so a test can look for them where they must not be.
 */
export class FakeIssuer implements Issuer {
  readonly type = 'fake'
  readonly calls: CredentialRequest[] = []
  /** clock.now() at each call. */
  readonly callTimes: number[] = []
  readonly tokens: string[] = []
  mode: FakeMode = 'ok'
  /** Lifetime of the credentials it issues; undefined: they never expire. */
  ttlMs: number | undefined
  failure: () => Error = () => new IssuerError('SIDEKEY_ISSUER_FAILED', 'token endpoint answered 500')
  closed = 0
  readonly #clock: FakeClock
  readonly #waiting: Array<() => void> = []
  readonly #listeners: Array<() => void> = []

  constructor (clock: FakeClock, ttlMs: number | undefined) {
    this.#clock = clock
    this.ttlMs = ttlMs
  }

  async fetch (request: CredentialRequest): Promise<IssuedCredential> {
    this.calls.push(request)
    this.callTimes.push(this.#clock.now())
    if (this.mode === 'fail') throw this.failure()
    if (this.mode === 'hang') return new Promise<IssuedCredential>(() => {})
    if (this.mode === 'manual') {
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
      if (this.mode !== 'manual' && this.mode !== 'ok') throw this.failure()
    }
    const value = `fake.${randomUUID()}.${randomUUID()}`
    this.tokens.push(value)
    const token = new Secret(value)
    const now = this.#clock.now()
    return { token, id: token.fingerprint(), issuedAt: now, expiresAt: this.ttlMs === undefined ? undefined : now + this.ttlMs }
  }

  /** Lets every `manual` call waiting so far answer. */
  release (): void {
    for (const resolve of this.#waiting.splice(0)) resolve()
  }

  get waiting (): number { return this.#waiting.length }

  onChange (listener: () => void): void { this.#listeners.push(listener) }

  /** Simulates the issuer's source changing (a watched file). */
  changed (): void { for (const l of this.#listeners) l() }

  close (): void { this.closed++ }
}

/** Records every event; `next(pred)` resolves at the first (past or future) event matching. */
export class RecordingSink implements AuditSink {
  readonly events: AuditEvent[] = []
  readonly #waiters: Array<{ pred: (e: AuditEvent) => boolean, resolve: (e: AuditEvent) => void }> = []

  emit (event: AuditEvent): void {
    this.events.push(event)
    for (const w of [...this.#waiters]) {
      if (w.pred(event)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1)
        w.resolve(event)
      }
    }
  }

  of<K extends AuditEvent['event']> (kind: K): Array<Extract<AuditEvent, { event: K }>> {
    return this.events.filter((e): e is Extract<AuditEvent, { event: K }> => e.event === kind)
  }

  /** The first event after the `from`-th one that matches. */
  next (pred: (e: AuditEvent) => boolean, from = 0): Promise<AuditEvent> {
    const seen = this.events.slice(from).find(pred)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }))
  }
}

export interface ToolSpec {
  issuer?: string
  scopes?: string[]
  audience?: string
  refresh?: { at?: number, jitter?: number }
}

/** A validated Config (schema defaults filled) with the given tools; issuers default to one named `fake`. */
export function makeConfig (tools: Record<string, ToolSpec>, issuers: Record<string, unknown> = { fake: { type: 'exec', command: ['fake'] } }, instanceId = 'agent-1'): Config {
  const toolConfigs: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(tools)) {
    toolConfigs[name] = {
      match: { host: `${name}.tool.test` },
      issuer: spec.issuer ?? 'fake',
      ...(spec.scopes === undefined ? {} : { scopes: spec.scopes }),
      ...(spec.audience === undefined ? {} : { audience: spec.audience }),
      ...(spec.refresh === undefined ? {} : { refresh: spec.refresh }),
    }
  }
  return configSchema.parse({ instance_id: instanceId, issuers, tools: toolConfigs })
}

export interface Harness {
  clock: FakeClock
  sink: RecordingSink
  issuers: Map<string, FakeIssuer>
  /** Builds a manager whose issuers are FakeIssuers (one per issuer name, reused across managers). */
  manager: (config: Config, extra?: Partial<CredentialManagerDeps>) => CredentialManager
  /** Every token any fake issued. */
  tokens: () => string[]
}

/** Fakes wired the way app.ts wires the real things; `teardown` is t.teardown. */
export function harness (teardown: (fn: () => unknown) => void, opts: { ttlMs?: number | undefined, random?: () => number } = {}): Harness {
  const clock = new FakeClock()
  const sink = new RecordingSink()
  const issuers = new Map<string, FakeIssuer>()
  const dispatcher = new Agent()
  teardown(() => dispatcher.close())
  const ttl = 'ttlMs' in opts ? opts.ttlMs : 600_000
  const createIssuer = (name: string, _config: IssuerConfig, _deps: IssuerDeps): Issuer => {
    let issuer = issuers.get(name)
    if (issuer === undefined) {
      issuer = new FakeIssuer(clock, ttl)
      issuers.set(name, issuer)
    }
    return issuer
  }
  return {
    clock,
    sink,
    issuers,
    manager: (config, extra = {}) => {
      const m = CredentialManager.create(config, { clock, audit: sink, dispatcher, random: opts.random ?? (() => 0.5), createIssuer, ...extra })
      teardown(() => m.close())
      return m
    },
    tokens: () => [...issuers.values()].flatMap((i) => i.tokens),
  }
}
