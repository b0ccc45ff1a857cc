import { randomUUID } from 'node:crypto'
import { CompactSign, compactVerify, decodeProtectedHeader, errors } from 'jose'
import * as z from 'zod'
import type { OperatorPrivateKey, OperatorPublicKey } from './keys.js'

/** A command lives at most this long after it was signed. */
export const MAX_COMMAND_LIFETIME_S = 600
/** Clock difference tolerated between operator, broker and sidecar. */
export const CLOCK_SKEW_MS = 30_000

export const ACTIONS = ['lock', 'unlock', 'revoke', 'rotate'] as const
/** Decisions on a call held for approval (src/approvals/): they name the approval and its body's hash. */
export const APPROVAL_ACTIONS = ['approve', 'deny'] as const
export type FleetAction = typeof ACTIONS[number] | typeof APPROVAL_ACTIONS[number]

const name = z.string().regex(/^(\*|[A-Za-z0-9_.-]{1,128})$/)
const claims = z.strictObject({
  action: z.enum([...ACTIONS, ...APPROVAL_ACTIONS]),
  tool: name,
  instance: name,
  actor: z.string().min(1).max(200),
  reason: z.string().min(1).max(1000),
  jti: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().nonnegative(),
  /** approve and deny: the approval id and the held body's SHA-256, so one command decides one exact call. */
  approval: z.string().regex(/^apr_[A-Za-z0-9_-]{16}$/).optional(),
  body_sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
}).refine(
  (c) => ((APPROVAL_ACTIONS as readonly string[]).includes(c.action)) ===
    (c.approval !== undefined && c.body_sha256 !== undefined),
  'approve and deny name approval and body_sha256; others neither'
)

export type CommandClaims = z.output<typeof claims>

/** A command whose signature verified against an operator key. */
export interface VerifiedCommand extends CommandClaims {
  readonly kid: string
  /** The compact JWS, for the local state file (re-verified when read). */
  readonly jws: string
  /** When the broker stored it (ms since the epoch): the server's clock, not the writer's. */
  readonly storedAt: number
}

export type RejectReason =
  | 'malformed' | 'unsupported_alg' | 'unknown_key' | 'bad_signature'
  | 'lifetime_too_long' | 'not_yet_valid' | 'expired' | 'replayed' | 'key_mismatch'
  | 'unknown_approval' | 'approval_mismatch'

export type Verification =
  | { ok: true, command: VerifiedCommand }
  | { ok: false, reason: RejectReason, claims?: Partial<CommandClaims>, kid?: string }

export interface CommandInput {
  readonly action: FleetAction
  readonly tool: string
  readonly instance: string
  readonly actor: string
  readonly reason: string
  /** Seconds the command stays fresh; at most MAX_COMMAND_LIFETIME_S. */
  readonly ttlSeconds?: number
  readonly approval?: string
  readonly body_sha256?: string
}

/** Signs a command with an operator key: a compact JWS with `kid`, claims as above. */
export async function signCommand (
  input: CommandInput, key: OperatorPrivateKey, now = Date.now()
): Promise<{ jws: string, claims: CommandClaims }> {
  const iat = Math.floor(now / 1000)
  const c = claims.parse({
    action: input.action,
    tool: input.tool,
    instance: input.instance,
    actor: input.actor,
    reason: input.reason,
    jti: randomUUID().replaceAll('-', ''),
    iat,
    exp: iat + Math.min(input.ttlSeconds ?? MAX_COMMAND_LIFETIME_S, MAX_COMMAND_LIFETIME_S),
    ...(input.approval === undefined ? {} : { approval: input.approval, body_sha256: input.body_sha256 }),
  })
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(c)))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'sidekey-command+jwt' })
    .sign(key.key)
  return { jws, claims: c }
}

/**
 * Verifies a command as stored in the bucket: signature (ES256 or EdDSA, with a kid among `keys`), claims,
 * lifetime (exp ≤ iat + 10 min), and freshness against `storedAt`, the time the BROKER stored it. A command stored
 * while fresh is accepted later too (a sidecar away for an hour catches up); the same JWS stored again after its exp
 * (a replay by anyone who can write the bucket) is refused, because the writer cannot choose the broker's timestamp.
 * The replay cache (jti seen) is the caller's.
 */
export async function verifyCommand (
  jws: string, keys: ReadonlyMap<string, OperatorPublicKey>, storedAt: number, now: number
): Promise<Verification> {
  if (jws.length > 8192 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jws)) {
    return { ok: false, reason: 'malformed' }
  }
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(jws)
  } catch {
    return { ok: false, reason: 'malformed' }
  }
  const kid = typeof header.kid === 'string' ? header.kid : undefined
  const unverified = peekClaims(jws)
  const fail = (reason: RejectReason): Verification => ({
    ok: false,
    reason,
    ...(unverified === undefined ? {} : { claims: unverified }),
    ...(kid === undefined ? {} : { kid }),
  })
  if (header.alg !== 'ES256' && header.alg !== 'EdDSA') return fail('unsupported_alg')
  const key = kid === undefined ? undefined : keys.get(kid)
  if (key === undefined) return fail('unknown_key')
  if (key.alg !== header.alg) return fail('bad_signature')
  let payload: Uint8Array
  try {
    ({ payload } = await compactVerify(jws, key.key, { algorithms: [key.alg] }))
  } catch (err) {
    return fail(err instanceof errors.JWSSignatureVerificationFailed ? 'bad_signature' : 'malformed')
  }
  let parsed: CommandClaims
  try {
    parsed = claims.parse(JSON.parse(new TextDecoder().decode(payload)))
  } catch {
    return fail('malformed')
  }
  const freshness = checkFreshness(parsed, storedAt, now)
  if (freshness !== undefined) return { ok: false, reason: freshness, claims: parsed, kid: key.kid }
  return { ok: true, command: { ...parsed, kid: key.kid, jws, storedAt } }
}

function checkFreshness (c: CommandClaims, storedAt: number, now: number): RejectReason | undefined {
  if (c.exp <= c.iat || c.exp - c.iat > MAX_COMMAND_LIFETIME_S) return 'lifetime_too_long'
  if (c.iat * 1000 > Math.min(storedAt, now) + CLOCK_SKEW_MS) return 'not_yet_valid'
  if (storedAt > c.exp * 1000 + CLOCK_SKEW_MS) return 'expired'
  return undefined
}

/** The claims of a JWS before verification, for the audit line of a rejected command (strings only, bounded). */
function peekClaims (jws: string): Partial<CommandClaims> | undefined {
  try {
    const raw = JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
    const out: Record<string, string> = {}
    for (const k of ['action', 'tool', 'instance', 'actor', 'jti'] as const) {
      const v = raw[k]
      if (typeof v === 'string' && /^[\x20-\x7e]{1,128}$/.test(v)) out[k] = v
    }
    return out as Partial<CommandClaims>
  } catch {
    return undefined
  }
}
