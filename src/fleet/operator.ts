import type { KV } from '@nats-io/kv'
import { KEYS, type Ack, type Heartbeat } from './bucket.js'
import {
  MAX_COMMAND_LIFETIME_S, signCommand, verifyCommand, type CommandClaims, type CommandInput, type VerifiedCommand,
} from './command.js'
import type { OperatorPrivateKey, OperatorPublicKey } from './keys.js'

/** An instance is live while its last heartbeat is younger than this many heartbeat intervals. */
const LIVE_INTERVALS = 3

export interface IssueOptions {
  readonly kv: KV
  readonly key: OperatorPrivateKey
  readonly input: CommandInput
  /** How long to wait for every live instance the command names to acknowledge. */
  readonly waitMs: number
  /** Called for each acknowledgement as it arrives. */
  readonly onAck?: (ack: Ack) => void
  readonly now?: () => number
}

export interface IssueResult {
  readonly claims: CommandClaims
  readonly jws: string
  readonly acks: Ack[]
  /** Live instances the command named, at publication. */
  readonly live: string[]
  /** Live instances that did not answer within the wait. */
  readonly pending: string[]
  /** From publication to the last acknowledgement (or the end of the wait). */
  readonly elapsedMs: number
}

/**
 * What `sidekey fleet lock|unlock|revoke|rotate` does: signs the command, stores it as `cmd.<jti>` (create: never
 * overwrites), and collects acknowledgements until every live instance it names has answered (applied, not
 * revocable, failed or rejected: each answer is final) or `waitMs` passed.
 */
export async function issueCommand (o: IssueOptions): Promise<IssueResult> {
  const now = o.now ?? Date.now
  const live = (await liveInstances(o.kv, now())).map((h) => h.instance)
    .filter((i) => o.input.instance === '*' || i === o.input.instance)
  const { jws, claims } = await signCommand(o.input, o.key, now())
  const acks = new Map<string, Ack>()
  const watch = await o.kv.watch({ key: KEYS.acks(claims.jti) })
  const started = performance.now()
  let last = started
  const waitingFor = (): string[] => live.filter((i) => !acks.has(i))
  const collected = (async () => {
    for await (const e of watch) {
      if (e.operation !== 'PUT') continue
      let ack: Ack
      try { ack = e.json<Ack>() } catch { continue }
      acks.set(ack.instance, ack)
      last = performance.now()
      o.onAck?.(ack)
      if (live.length > 0 && waitingFor().length === 0) break
    }
  })()
  await o.kv.create(KEYS.command(claims.jti), jws)
  let timer: NodeJS.Timeout | undefined
  await Promise.race([collected, new Promise((resolve) => { timer = setTimeout(resolve, o.waitMs) })])
  clearTimeout(timer)
  watch.stop()
  const elapsedMs = Math.round((waitingFor().length === 0 ? last : performance.now()) - started)
  return { claims, jws, acks: [...acks.values()], live, pending: waitingFor(), elapsedMs }
}

/** Instances whose heartbeat is recent, sorted by id. */
export async function liveInstances (kv: KV, now: number): Promise<Heartbeat[]> {
  const out: Heartbeat[] = []
  for (const hb of await values<Heartbeat>(kv, 'hb.>')) {
    if (now - Date.parse(hb.last_seen) <= LIVE_INTERVALS * hb.heartbeat_ms) out.push(hb)
  }
  return out.sort((a, b) => a.instance.localeCompare(b.instance))
}

/** Every JSON value under `filter` (unparseable ones skipped). */
export async function values<T> (kv: KV, filter: string): Promise<T[]> {
  const keys = await keysOf(kv, filter)
  const out: T[] = []
  for (const k of keys) {
    const e = await kv.get(k)
    if (e === null || e.operation !== 'PUT') continue
    try { out.push(e.json<T>()) } catch { /* not ours */ }
  }
  return out
}

/** The keys under `filter`, once each (a key written again while they are listed comes back twice). */
async function keysOf (kv: KV, filter: string): Promise<string[]> {
  const keys = new Set<string>()
  for await (const k of await kv.keys(filter)) keys.add(k)
  return [...keys]
}

/** The union of every instance's published local_jwt keys (`jwks.<instance>`): one JWKS for validators. */
export async function fleetJwks (kv: KV): Promise<{ keys: Array<Record<string, unknown>> }> {
  const byKid = new Map<string, Record<string, unknown>>()
  for (const entry of await values<{ keys?: unknown }>(kv, 'jwks.>')) {
    if (!Array.isArray(entry.keys)) continue
    for (const k of entry.keys as Array<Record<string, unknown>>) {
      if (typeof k?.kid === 'string' && !byKid.has(k.kid)) byKid.set(k.kid, k)
    }
  }
  return { keys: [...byKid.values()] }
}

export interface StoredCommand {
  readonly key: string
  readonly storedAt: number
  readonly command: VerifiedCommand | undefined
  readonly reason?: string
}

/** The commands in the bucket, verified against the operator keys (a forged one shows as rejected). */
export async function storedCommands (
  kv: KV, keys: ReadonlyMap<string, OperatorPublicKey>, now: number
): Promise<StoredCommand[]> {
  const out: StoredCommand[] = []
  for (const key of await keysOf(kv, 'cmd.>')) {
    const e = await kv.get(key)
    if (e === null || e.operation !== 'PUT') continue
    const v = await verifyCommand(e.string(), keys, e.created.getTime(), now)
    const storedAt = e.created.getTime()
    out.push(v.ok ? { key, storedAt, command: v.command } : { key, storedAt, command: undefined, reason: v.reason })
  }
  return out.sort((a, b) => (a.command?.iat ?? 0) - (b.command?.iat ?? 0))
}

/**
 * Keeps the bucket bounded: removes commands past their exp that no longer decide anything (revoke and rotate,
 * and lock/unlock superseded by a later one for the same tool and instance scope), with their acknowledgements.
 * The lock/unlock commands in force stay: they are how a new or restarted sidecar learns its locks.
 */
export async function pruneCommands (kv: KV, stored: readonly StoredCommand[], now: number): Promise<number> {
  const latest = new Map<string, VerifiedCommand>()
  for (const s of stored) {
    const c = s.command
    if (c === undefined || (c.action !== 'lock' && c.action !== 'unlock')) continue
    const scope = `${c.tool}\n${c.instance}`
    const held = latest.get(scope)
    if (held === undefined || held.iat <= c.iat) latest.set(scope, c)
  }
  const keep = new Set([...latest.values()].map((c) => c.jti))
  let removed = 0
  for (const s of stored) {
    const c = s.command
    // What never verified goes once it could no longer be fresh anyway; a verified command once it expired.
    const expired = c === undefined
      ? s.storedAt + MAX_COMMAND_LIFETIME_S * 1000 < now
      : !keep.has(c.jti) && c.exp * 1000 <= now
    if (!expired) continue
    for await (const k of await kv.keys(KEYS.acks(s.key.slice('cmd.'.length)))) await kv.purge(k)
    await kv.purge(s.key)
    removed++
  }
  return removed
}
