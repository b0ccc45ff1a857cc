import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import { writeFileAtomic } from '../util/atomic-write.js'

/** The generated admin token's file name, in the CA directory, when `admin.token_file` is not set. */
export const ADMIN_TOKEN_FILE = 'admin-token'

/** Where the admin token is read from: `admin.token_file`, else the generated file beside the CA. */
export function adminTokenPath (config: Pick<Config, 'admin' | 'ca'>): string {
  return config.admin.token_file ?? join(config.ca.dir, ADMIN_TOKEN_FILE)
}

/** SHA-256 of a token as a file holds it (surrounding whitespace and the final newline are not part of it). */
export function tokenDigest (text: string): Buffer {
  return createHash('sha256').update(text.trim()).digest()
}

/**
 * Loads `dir/admin-token`, or makes it on first start: 32 random bytes, base64url, mode 0600, written atomically so
 * that a CLI reading it never sees half a token. The admin port is reachable from anything sharing sidekey's network
 * namespace (the agent, under compose), so its writes are never open. A file others can read is refused.
 */
export async function loadOrCreateAdminToken (
  dir: string
): Promise<{ path: string, digest: Buffer, created: boolean }> {
  const path = join(dir, ADMIN_TOKEN_FILE)
  const text = await readPrivate(path)
  if (text !== undefined) {
    if (text.trim() === '') throw fail(`${path} is empty; remove it to let sidekey make a new one`)
    return { path, digest: tokenDigest(text), created: false }
  }
  const token = randomBytes(32).toString('base64url')
  try {
    const made = await mkdir(dir, { recursive: true, mode: 0o700 })
    if (made !== undefined) await chmod(dir, 0o700)
    await writeFileAtomic(path, token + '\n', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new SidekeyError('SIDEKEY_INTERNAL', `cannot write ${path} (${code})`, { cause: err })
  }
  return { path, digest: tokenDigest(token), created: true }
}

/** The token a CLI presents to the admin port: from the same file the server reads. */
export async function readAdminToken (config: Pick<Config, 'admin' | 'ca'>): Promise<string> {
  const path = adminTokenPath(config)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    const made = code === 'ENOENT' && config.admin.token_file === undefined
    const hint = made ? ': sidekey makes it at its first start' : ''
    throw fail(`cannot read the admin token ${path} (${code})${hint}`, err)
  }
  if (text.trim() === '') throw fail(`the admin token ${path} is empty`)
  return text.trim()
}

async function readPrivate (path: string): Promise<string | undefined> {
  try {
    const st = await stat(path)
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
      throw fail(`${path} is accessible by group or others (mode ${mode}); run chmod 600 on it`)
    }
    return await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof SidekeyError) throw err
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fail(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, err)
  }
}

function fail (message: string, cause?: unknown): SidekeyError {
  return new SidekeyError('SIDEKEY_CONFIG_INVALID', message, { cause })
}
