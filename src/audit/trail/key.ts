import {
  createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject,
} from 'node:crypto'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { SidekeyError } from '../../errors.js'
import { writeFileAtomic } from '../../util/atomic-write.js'

/**
 * The instance's audit key (Ed25519, node:crypto only: made or loaded in well under a millisecond) and the signed
 * checkpoints it makes. The key lives beside the CA key, mode 0600; the last checkpoint is kept beside it so that
 * the next run's `audit.started` can name it.
 *
 * A checkpoint is a compact JWS (RFC 7515, alg EdDSA), so any JOSE library can check it with the public JWK:
 *   header  {"alg":"EdDSA","kid":KID,"typ":"sidekey-audit-checkpoint"}
 *   payload {"iss":INSTANCE_ID,"run_id":R,"seq":N,"chain":C,"final":BOOL,"iat":SECONDS}
 * It vouches that line `seq` of run `run_id` had `chain` C, hence for every line up to it; `final` marks the
 * shutdown checkpoint, after which the run writes nothing.
 *
 * @example
 *   const key = await loadOrCreateAuditKey('./data/ca')
 *   const jws = signCheckpoint(key, { iss: 'pod-1', run_id, seq: 1000, chain, final: false, iat: 1764859945 })
 */

export const AUDIT_KEY_FILE = 'audit-key.pem'
export const AUDIT_CHECKPOINT_FILE = 'audit-checkpoint.json'
export const CHECKPOINT_TYP = 'sidekey-audit-checkpoint'

/** An Ed25519 public key as a JWK (RFC 8037), with its RFC 7638 thumbprint as `kid`. */
export interface AuditJwk {
  kty: 'OKP'
  crv: 'Ed25519'
  x: string
  kid: string
  alg: 'EdDSA'
  use: 'sig'
}

export interface AuditKey {
  readonly publicJwk: AuditJwk
  readonly privateKey: KeyObject
}

export interface CheckpointClaims {
  /** The instance id. */
  iss: string
  run_id: string
  seq: number
  chain: string
  final: boolean
  /** Seconds since the epoch. */
  iat: number
}

/** What `audit.started` carries of the previous run, and what the fleet hook is given. */
export interface SignedCheckpoint extends CheckpointClaims {
  jws: string
}

/** Loads `dir/audit-key.pem`, or makes it (dir 0700, key 0600) on first start. A key others can read is refused. */
export async function loadOrCreateAuditKey (dir: string): Promise<AuditKey> {
  const path = join(dir, AUDIT_KEY_FILE)
  let pem: Buffer | undefined
  try {
    const st = await stat(path)
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
      throw fail(`${path} is accessible by group or others (mode ${mode}); run chmod 600 on it`)
    }
    pem = await readFile(path)
  } catch (err) {
    if (err instanceof SidekeyError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') throw fail(`cannot read ${path} (${code ?? 'error'})`, err)
  }
  if (pem !== undefined) {
    let privateKey: KeyObject
    try {
      privateKey = createPrivateKey(pem)
    } catch (err) {
      throw fail(`${path} is not a PEM private key`, err)
    } finally {
      pem.fill(0)
    }
    if (privateKey.asymmetricKeyType !== 'ed25519') throw fail(`${path} is not an Ed25519 key`)
    return { privateKey, publicJwk: publicJwk(createPublicKey(privateKey)) }
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  try {
    const created = await mkdir(dir, { recursive: true, mode: 0o700 })
    if (created !== undefined) await chmod(dir, 0o700)
    await writeFileAtomic(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600)
  } catch (err) {
    throw fail(`cannot write ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, err)
  }
  return { privateKey, publicJwk: publicJwk(publicKey) }
}

export function publicJwk (key: KeyObject): AuditJwk {
  const { x } = key.export({ format: 'jwk' }) as { x: string }
  // RFC 7638: the required members, lexicographic order, no spaces.
  const kid = createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest('base64url')
  return { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' }
}

export function signCheckpoint (key: AuditKey, claims: CheckpointClaims): string {
  const header = b64json({ alg: 'EdDSA', kid: key.publicJwk.kid, typ: CHECKPOINT_TYP })
  const input = `${header}.${b64json(claims)}`
  return `${input}.${sign(null, Buffer.from(input), key.privateKey).toString('base64url')}`
}

export type CheckpointCheck =
  | { ok: true, claims: CheckpointClaims, kid: string | undefined }
  | { ok: false, why: string }

/** Checks a checkpoint JWS against a public JWK: the signature, then the claims' shape. */
export function verifyCheckpoint (jws: string, jwk: { x?: unknown, crv?: unknown, kty?: unknown }): CheckpointCheck {
  const parts = jws.split('.')
  if (parts.length !== 3) return { ok: false, why: 'not a compact JWS' }
  let header: Record<string, unknown>
  let claims: Record<string, unknown>
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as Record<string, unknown>
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
  } catch {
    return { ok: false, why: 'JWS header or payload is not JSON' }
  }
  if (header.alg !== 'EdDSA') return { ok: false, why: `JWS alg ${JSON.stringify(header.alg)} is not EdDSA` }
  let key: KeyObject
  try {
    key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } as never, format: 'jwk' })
  } catch {
    return { ok: false, why: 'the audit key is not a usable Ed25519 JWK' }
  }
  if (key.asymmetricKeyType !== 'ed25519') return { ok: false, why: 'the audit key is not an Ed25519 key' }
  if (!verify(null, Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2]!, 'base64url'))) {
    return { ok: false, why: 'signature does not verify' }
  }
  if (typeof claims.run_id !== 'string' || typeof claims.seq !== 'number' || typeof claims.chain !== 'string' ||
    typeof claims.iss !== 'string') {
    return { ok: false, why: 'signed claims lack run_id, seq, chain or iss' }
  }
  return {
    ok: true,
    claims: {
      iss: claims.iss,
      run_id: claims.run_id,
      seq: claims.seq,
      chain: claims.chain,
      final: claims.final === true,
      iat: typeof claims.iat === 'number' ? claims.iat : 0,
    },
    kid: typeof header.kid === 'string' ? header.kid : undefined,
  }
}

/** The last checkpoint written in `dir`, or undefined (none yet, or unreadable: then the next run says so). */
export async function readLastCheckpoint (dir: string): Promise<SignedCheckpoint | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, AUDIT_CHECKPOINT_FILE), 'utf8')) as SignedCheckpoint
    return typeof v?.jws === 'string' && typeof v.run_id === 'string' && typeof v.seq === 'number' ? v : undefined
  } catch {
    return undefined
  }
}

export async function writeLastCheckpoint (dir: string, cp: SignedCheckpoint): Promise<void> {
  await writeFileAtomic(join(dir, AUDIT_CHECKPOINT_FILE), JSON.stringify(cp) + '\n', 0o600)
}

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')

function fail (message: string, cause?: unknown): SidekeyError {
  return new SidekeyError('SIDEKEY_AUDIT_KEY', message, cause === undefined ? {} : { cause })
}
