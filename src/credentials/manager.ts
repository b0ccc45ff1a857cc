import { isDeepStrictEqual } from 'node:util'
import type { Dispatcher } from 'undici'
import type { AuditSink } from '../audit/events.js'
import type { Config, IssuerConfig, ToolConfig } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import type { Clock } from '../util/clock.js'
import type { Issuer, IssuerDeps, JsonWebKeyPublic } from './issuer.js'
import { createIssuer } from './issuers/index.js'
import type { CallBinding, Credential, CredentialProvider, RevokeOutcome, ToolCredentialStatus } from './provider.js'
import { CredentialRefresher, DEFAULT_ISSUER_TIMEOUT_MS } from './refresher.js'
import type { Tracing } from '../tracing/index.js'
import { StepUpCache, stepUpScopes, type StepUpSpec } from './step-up.js'

export interface CredentialManagerDeps {
  readonly clock: Clock
  readonly audit: AuditSink
  /** Given to every issuer for its HTTP calls (see IssuerDeps). */
  readonly dispatcher: Dispatcher
  /** [0, 1), for refresh and backoff jitter; Math.random by default. */
  readonly random?: () => number
  /**
   * The manager of the config being replaced: issuers whose config is unchanged are taken over (local_jwt keeps
   * its signing keys) with the credentials of their slots, instead of fetching again. Close it once this one serves.
   */
  readonly previous?: CredentialManager
  /** Builds an issuer from its config; issuers/index.ts `createIssuer` by default. Tests pass fakes here. */
  readonly createIssuer?: (name: string, config: IssuerConfig, deps: IssuerDeps) => Issuer
  /** With `tracing:`: a span per refresh. */
  readonly tracing?: Tracing | undefined
}

/** An issuer with the config it was built from, shared by a manager and its successor across a reload. */
interface IssuerHandle {
  readonly name: string
  readonly config: IssuerConfig
  readonly issuer: Issuer
  /** The onChange callbacks of the managers using this issuer; the issuer itself is subscribed once. */
  readonly listeners: Set<() => void>
  /** Set when a successor took the issuer over: closing it is then the successor's job. */
  handedOver: boolean
}

interface SlotSpec {
  readonly key: string
  readonly issuer: string
  readonly scopes: readonly string[]
  readonly audience: string | undefined
  readonly tools: Array<[string, ToolConfig]>
}

/**
 * The credential path: one refresher per credential slot (issuer, sorted scopes, audience), tools mapped to slots.
 * Implements what the request path and admin routes see (CredentialProvider).
 *
 * @example
 *   const credentials = CredentialManager.create(config, { clock: systemClock, audit, dispatcher })
 *   await credentials.start()            // never rejects: a tool whose issuer is down stays unready (503)
 *   credentials.current('github')        // Credential | undefined
 *   await credentials.close()
 */
export class CredentialManager implements CredentialProvider {
  readonly #instanceId: string
  readonly #handles = new Map<string, IssuerHandle>()
  readonly #slots = new Map<string, CredentialRefresher>()
  readonly #toolSlots = new Map<string, CredentialRefresher>()
  /** Tools with `per_call`: a signer bound to the tool's scopes, audience and token lifetime. */
  readonly #minters = new Map<string, (call: CallBinding) => Credential>()
  readonly #listeners = new Map<IssuerHandle, () => void>()
  /** Tools whose issuer allows `step_up_scopes`, and the stepped-up credentials fetched for them. */
  readonly #stepUpSpecs = new Map<string, StepUpSpec>()
  #stepUps: StepUpCache | undefined
  #started: Promise<void> | undefined
  #closed: Promise<void> | undefined

  private constructor (instanceId: string) {
    this.#instanceId = instanceId
  }

  static create (config: Readonly<Config>, deps: CredentialManagerDeps): CredentialManager {
    const manager = new CredentialManager(config.instance_id)
    manager.#stepUps = new StepUpCache(deps.clock, deps.audit)
    const build = deps.createIssuer ?? createIssuer
    const random = deps.random ?? Math.random
    const prev = deps.previous
    const prevHandles = prev === undefined ? new Map<string, IssuerHandle>() : prev.#handles
    const prevSlots = prev === undefined ? new Map<string, CredentialRefresher>() : prev.#slots
    const prevInstanceId = prev === undefined ? undefined : prev.#instanceId

    const adopted = new Set<string>()
    for (const [name, issuerConfig] of Object.entries(config.issuers)) {
      const old = prevHandles.get(name)
      if (old !== undefined && isDeepStrictEqual(old.config, issuerConfig)) {
        old.handedOver = true
        adopted.add(name)
        manager.#handles.set(name, { ...old, handedOver: false })
      } else {
        const issuer = build(name, issuerConfig, { clock: deps.clock, dispatcher: deps.dispatcher })
        manager.#handles.set(name, subscribe(name, issuerConfig, issuer))
      }
    }

    for (const spec of slotSpecs(config)) {
      const handle = manager.#handles.get(spec.issuer)
      if (handle === undefined) {
        const why = `tool "${spec.tools[0]?.[0]}" names unknown issuer "${spec.issuer}"`
        throw new SidekeyError('SIDEKEY_CONFIG_INVALID', why)
      }
      // A slot's credentials survive a reload only when they would be fetched the same way for the same instance.
      const oldSlot = prevSlots.get(spec.key)
      const carried = oldSlot !== undefined && adopted.has(spec.issuer) && prevInstanceId === config.instance_id
        ? oldSlot.state()
        : undefined
      // Tools sharing a slot may ask for different refresh points: the earliest wins, and the lowest use count.
      const earliest = spec.tools.reduce((a, b) => (b[1].refresh.at < a[1].refresh.at ? b : a))
      const maxUses = Math.min(...spec.tools.map(([, tool]) => tool.refresh.max_uses ?? Infinity))
      const timeout = 'timeout' in handle.config ? handle.config.timeout : DEFAULT_ISSUER_TIMEOUT_MS
      const slot = new CredentialRefresher({
        issuerName: spec.issuer,
        issuer: handle.issuer,
        tools: spec.tools.map(([name]) => name),
        scopes: spec.scopes,
        audience: spec.audience,
        instanceId: config.instance_id,
        refreshAt: earliest[1].refresh.at,
        refreshJitter: earliest[1].refresh.jitter,
        timeoutMs: timeout,
        maxUses: Number.isFinite(maxUses) ? maxUses : undefined,
        clock: deps.clock,
        audit: deps.audit,
        random,
        tracing: deps.tracing,
        ...(carried === undefined ? {} : { carried }),
      })
      manager.#slots.set(spec.key, slot)
      const stepUp = 'step_up_scopes' in handle.config ? handle.config.step_up_scopes ?? [] : []
      for (const [tool, toolConfig] of spec.tools) {
        manager.#toolSlots.set(tool, slot)
        const { issuer } = handle
        if (stepUp.length > 0) {
          manager.#stepUpSpecs.set(tool, {
            tool,
            issuerName: spec.issuer,
            issuer,
            scopes: spec.scopes,
            audience: spec.audience,
            allowed: new Set(stepUp),
            instanceId: config.instance_id,
            timeoutMs: timeout
          })
        }
        const perCall = toolConfig.per_call
        if (perCall === undefined || issuer.mint === undefined) continue
        const base = {
          tool, scopes: spec.scopes, audience: spec.audience, instanceId: config.instance_id, ttlMs: perCall.ttl,
        }
        manager.#minters.set(tool, (call) => issuer.mint!({ ...base, ...call }))
      }
    }

    for (const handle of manager.#handles.values()) {
      const listener = (): void => {
        if (manager.#closed !== undefined) return
        for (const slot of manager.#slots.values()) if (slot.issuerName === handle.name) void slot.refresh('changed')
      }
      handle.listeners.add(listener)
      manager.#listeners.set(handle, listener)
    }
    return manager
  }

  /** Starts every slot's first fetch; resolves when each has a credential or a first failure. Never rejects. */
  start (): Promise<void> {
    this.#started ??= Promise.all([...this.#slots.values()].map((slot) => slot.start())).then(() => undefined)
    return this.#started
  }

  /** Clears all timers, aborts calls in flight and closes the issuers not handed over to a successor. */
  close (): Promise<void> {
    this.#closed ??= this.#shutdown()
    return this.#closed
  }

  current (tool: string): Credential | undefined {
    return this.#toolSlots.get(tool)?.use()
  }

  mint (tool: string, call: CallBinding): Credential | undefined {
    const minter = this.#minters.get(tool)
    if (minter === undefined) return undefined
    try {
      return minter(call)
    } catch {
      // No key yet (the first one is still being generated) or signing failed: fail closed, the agent retries.
      return undefined
    }
  }

  retryAfterSeconds (tool: string): number {
    return this.#toolSlots.get(tool)?.retryAfterSeconds() ?? 1
  }

  async refreshRejected (tool: string, rejectedId: string): Promise<Credential | undefined> {
    const slot = this.#toolSlots.get(tool)
    return slot === undefined ? undefined : slot.refreshRejected(rejectedId, tool)
  }

  async stepUp (tool: string, scope: string): Promise<Credential | undefined> {
    const spec = this.#stepUpSpecs.get(tool)
    const scopes = spec === undefined || this.#closed !== undefined ? undefined : stepUpScopes(spec, scope)
    return scopes === undefined ? undefined : this.#stepUps?.get(spec!, scopes)
  }

  async rotate (tool: string, opts: { revokePrevious?: boolean } = {}): Promise<Credential> {
    return this.#slotOf(tool).rotate(tool, opts.revokePrevious === true)
  }

  async revoke (tool: string): Promise<RevokeOutcome[]> {
    if (tool === '*') return Promise.all([...this.#slots.values()].map((slot) => slot.revoke(slot.tools[0]!)))
    return [await this.#slotOf(tool).revoke(tool)]
  }

  #slotOf (tool: string): CredentialRefresher {
    const slot = this.#toolSlots.get(tool)
    if (slot === undefined) {
      throw new SidekeyError('SIDEKEY_UNKNOWN_TOOL', `unknown tool ${JSON.stringify(tool)}`, { details: { tool } })
    }
    return slot
  }

  status (): Record<string, ToolCredentialStatus> {
    const out: Record<string, ToolCredentialStatus> = {}
    for (const [tool, slot] of this.#toolSlots) out[tool] = slot.status(tool)
    return out
  }

  unready (): string[] {
    return [...this.#toolSlots].filter(([, slot]) => slot.current() === undefined).map(([tool]) => tool).sort()
  }

  jwks (): JsonWebKeyPublic[] {
    const byKid = new Map<string, JsonWebKeyPublic>()
    for (const { issuer } of this.#handles.values()) {
      for (const key of issuer.jwks?.() ?? []) if (!byKid.has(key.kid)) byKid.set(key.kid, key)
    }
    return [...byKid.values()]
  }

  async #shutdown (): Promise<void> {
    for (const [handle, listener] of this.#listeners) handle.listeners.delete(listener)
    await Promise.all([...this.#slots.values()].map((slot) => slot.close()))
    const closing = [...this.#handles.values()].filter((h) => !h.handedOver).map(async (h) => h.issuer.close?.())
    await Promise.allSettled(closing)
  }
}

function subscribe (name: string, config: IssuerConfig, issuer: Issuer): IssuerHandle {
  const handle: IssuerHandle = { name, config, issuer, listeners: new Set(), handedOver: false }
  issuer.onChange?.(() => { for (const listener of handle.listeners) listener() })
  return handle
}

/** Groups tools by what they ask for: (issuer, sorted unique scopes, audience), in config order. */
function slotSpecs (config: Readonly<Config>): SlotSpec[] {
  const specs = new Map<string, SlotSpec>()
  for (const [name, tool] of Object.entries(config.tools)) {
    const scopes = [...new Set(tool.scopes)].sort()
    const key = JSON.stringify([tool.issuer, scopes, tool.audience ?? null])
    const spec = specs.get(key)
    if (spec === undefined) {
      specs.set(key, { key, issuer: tool.issuer, scopes, audience: tool.audience, tools: [[name, tool]] })
    } else spec.tools.push([name, tool])
  }
  return [...specs.values()]
}
