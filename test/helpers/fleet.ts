import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { KV } from '@nats-io/kv'
import { parseOperatorKeys, type OperatorPrivateKey } from '../../src/fleet/keys.js'
import { openBucket } from '../../src/fleet/bucket.js'
import { fleet as fleetSchema } from '../../src/config/schema.js'

export interface OperatorKeyFiles {
  readonly key: OperatorPrivateKey
  /** The JWKS file to name in operator_keys. */
  readonly jwksFile: string
  /** The private key as PKCS#8 PEM, for `--key`. */
  readonly pemFile: string
  readonly dir: string
}

/** An operator key pair (ES256 or EdDSA) written as a JWKS and a PKCS#8 PEM in a temp dir. */
export async function operatorKey (alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<OperatorKeyFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-operator-'))
  const pair = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519')
  const pem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const pub = [...(await parseOperatorKeys(pem, 'test')).values()][0]!
  const jwksFile = join(dir, 'operators.jwks')
  writeFileSync(jwksFile, JSON.stringify({ keys: [pub.jwk] }))
  const pemFile = join(dir, 'operator.pem')
  writeFileSync(pemFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
  return { key: { kid: pub.kid, alg, key: pair.privateKey }, jwksFile, pemFile, dir }
}

/** The test's own connection to the fleet bucket (what the CLI opens). */
export async function testBucket (t: Test, url: string, bucket = 'sidekey'): Promise<KV> {
  const config = fleetSchema.parse({ nats: { servers: [url] }, operator_keys: '/unused', bucket })
  const { nc, kv } = await openBucket(config, { servers: [url], name: 'test operator' })
  t.teardown(() => nc.close())
  return kv
}

/** Percentile of sorted numbers (nearest rank). */
export function percentile (sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}
