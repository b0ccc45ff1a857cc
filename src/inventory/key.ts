import { createHash, createHmac, randomBytes } from 'node:crypto'
import { link, mkdir, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { SidekeyError } from '../errors.js'
import { writeFileAtomic } from '../util/atomic-write.js'

/**
 * The key inventory fingerprints are made with: 32 random bytes, made on first start in inventory mode and kept
 * 0600 beside the CA key (`inventory.key` in `ca.dir`). Persisted, not per process: a fingerprint must name the
 * same credential across restarts, and across the instances that share the CA directory, or "distinct
 * credentials" would grow with every restart. Keyed, not a plain hash: a fingerprint in a log must not let anyone
 * without the key test guesses of a short or low-entropy key.
 */

export const INVENTORY_KEY_FILE = 'inventory.key'
const KEY_BYTES = 32
/** 72 bits: no collisions among the credentials one fleet carries, short enough for a table. */
const FINGERPRINT_CHARS = 12

export interface FingerprintKey {
  /** A short name of the key (not the key): fingerprints under different ids cannot be compared. */
  readonly id: string
  fingerprint (value: string): string
}

export async function loadOrCreateFingerprintKey (dir: string): Promise<FingerprintKey> {
  const path = join(dir, INVENTORY_KEY_FILE)
  const key = await readKey(path) ?? await createKey(dir, path)
  return {
    id: createHash('sha256').update('sidekey inventory key id').update(key).digest('base64url').slice(0, 8),
    fingerprint: (value) => createHmac('sha256', key).update(value).digest('base64url').slice(0, FINGERPRINT_CHARS),
  }
}

async function readKey (path: string): Promise<Buffer | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw keyError(path, err)
  }
  const key = Buffer.from(text.trim(), 'base64')
  if (key.length !== KEY_BYTES) {
    const why = `${path} is not an inventory key (${KEY_BYTES} bytes, base64): remove it to make a new one`
    throw new SidekeyError('SIDEKEY_CONFIG_INVALID', why)
  }
  return key
}

/** Created exclusively (hard link of a complete temp file): two instances starting together end with one key. */
async function createKey (dir: string, path: string): Promise<Buffer> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`
  await writeFileAtomic(tmp, randomBytes(KEY_BYTES).toString('base64') + '\n', 0o600)
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw keyError(path, err)
  } finally {
    await unlink(tmp).catch(() => {})
  }
  const key = await readKey(path)
  if (key === undefined) throw keyError(path, undefined)
  return key
}

function keyError (path: string, err: unknown): SidekeyError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? 'error'
  const why = `the inventory key ${path} cannot be read or made (${code})`
  return new SidekeyError('SIDEKEY_CONFIG_INVALID', why, { cause: err })
}
