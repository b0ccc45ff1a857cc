import { readFile } from 'node:fs/promises'
import { connect, credsAuthenticator, type NatsConnection, type ConnectionOptions } from '@nats-io/transport-node'
import { Kvm, type KV } from '@nats-io/kv'
import type { FleetConfig } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import type { ToolLock } from '../proxy/lock-view.js'

/**
 * The fleet bucket's keys (a JetStream key-value bucket, one value per key):
 *   cmd.<jti>              a signed command (compact JWS); created once, never overwritten by the CLI
 *   ack.<jti>.<instance>   {instance, jti, applied_at, result, lag_ms}: an instance applied (or refused) it
 *   hb.<instance>          {instance, version, last_seen, heartbeat_ms, connected, locks}
 *   jwks.<instance>        {instance, keys, updated_at}: the public keys of its local_jwt issuers
 *   checkpoint.<instance>  {instance, run_id, seq, chain, final, iat, jws}: its latest signed audit checkpoint
 * Only `cmd.` values change what a sidecar does, and only after their signature verifies; the rest is reporting.
 */
export const KEYS = {
  command: (jti: string) => `cmd.${jti}`,
  ack: (jti: string, instance: string) => `ack.${jti}.${keyToken(instance)}`,
  acks: (jti: string) => `ack.${jti}.>`,
  heartbeat: (instance: string) => `hb.${keyToken(instance)}`,
  jwks: (instance: string) => `jwks.${keyToken(instance)}`,
  checkpoint: (instance: string) => `checkpoint.${keyToken(instance)}`,
} as const

/** One bucket key token for any instance id: characters a key cannot hold (dots split tokens) become `=XX`. */
export function keyToken (value: string): string {
  const escape = (b: number): string => `=${b.toString(16).toUpperCase().padStart(2, '0')}`
  return value.replace(/[^A-Za-z0-9_-]/g, (c) => [...Buffer.from(c)].map(escape).join(''))
}

export interface Ack {
  readonly instance: string
  readonly jti: string
  readonly applied_at: string
  /** `applied`, `not_configured` (the tool is not on that instance), `failed: CODE` or `rejected: REASON`. */
  readonly result: string
  readonly lag_ms?: number
}

export interface Heartbeat {
  readonly instance: string
  readonly version: string
  readonly last_seen: string
  readonly heartbeat_ms: number
  /** The locks this instance enforces now (reporting only: nothing reads state from here). */
  readonly locks: readonly ToolLock[]
}

/** Results that mean "done" for the CLI's wait. */
export function ackDone (result: string): boolean {
  return result === 'applied' || result === 'not_configured'
}

/** NATS connection options from `fleet.nats` (secrets read from their files now, never logged). */
export async function natsOptions (config: FleetConfig, name: string): Promise<ConnectionOptions> {
  const n = config.nats
  const opts: ConnectionOptions = { servers: [...n.servers], name }
  if (n.token_file !== undefined) opts.token = await readSecret(n.token_file, 'fleet.nats.token_file')
  if (n.user !== undefined && n.password_file !== undefined) {
    opts.user = n.user
    opts.pass = await readSecret(n.password_file, 'fleet.nats.password_file')
  }
  if (n.creds_file !== undefined) {
    const creds = await readSecret(n.creds_file, 'fleet.nats.creds_file')
    opts.authenticator = credsAuthenticator(new TextEncoder().encode(creds))
  }
  if (n.tls !== undefined) {
    opts.tls = {
      ...(n.tls.ca_file === undefined ? {} : { caFile: n.tls.ca_file }),
      ...(n.tls.cert_file === undefined ? {} : { certFile: n.tls.cert_file }),
      ...(n.tls.key_file === undefined ? {} : { keyFile: n.tls.key_file }),
    }
  }
  return opts
}

/** Connects and opens (creating when missing) the fleet bucket: one value per key. */
export async function openBucket (
  config: FleetConfig, options: ConnectionOptions
): Promise<{ nc: NatsConnection, kv: KV }> {
  const nc = await connect(options)
  try {
    const kv = await new Kvm(nc).create(config.bucket, { history: 1 })
    return { nc, kv }
  } catch (err) {
    await nc.close().catch(() => {})
    throw err
  }
}

async function readSecret (file: string, key: string): Promise<string> {
  try {
    const text = (await readFile(file, 'utf8')).trim()
    if (text === '') throw new SidekeyError('SIDEKEY_CONFIG_INVALID', `${key} ${file} is empty`)
    return text
  } catch (err) {
    if (err instanceof SidekeyError) throw err
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new SidekeyError('SIDEKEY_CONFIG_INVALID', `${key} ${file} cannot be read (${code})`)
  }
}
