import { readFile } from 'node:fs/promises'
import { createHash, X509Certificate } from 'node:crypto'
import { SidekeyError } from '../errors.js'
import type { Config } from './schema.js'

/** What a config needs from disk besides itself, read before anything is created, bound or fetched. */
export interface Preflight {
  /** SHA-256 of `admin.token_file`'s token. */
  readonly tokenDigest: Buffer | undefined
  /** `upstream_ca_file`'s certificates (PEM). */
  readonly upstreamCa: string | undefined
}

/**
 * Everything `run` (and a reload) refuses a valid-looking config for, in one place, so `sidekey check` refuses
 * exactly the same (it calls this too). Throws SIDEKEY_CONFIG_INVALID naming each file; never quotes contents.
 */
export async function preflight (config: Readonly<Config>): Promise<Preflight> {
  const problems: string[] = []
  const read = async (key: string, file: string | undefined): Promise<string | undefined> => {
    if (file === undefined) return undefined
    try {
      return await readFile(file, 'utf8')
    } catch (err) {
      problems.push(`${key} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
      return undefined
    }
  }
  const [token, upstreamCa] = await Promise.all([
    read('admin.token_file', config.admin.token_file),
    read('upstream_ca_file', config.upstream_ca_file),
  ])
  if (token !== undefined && token.trim() === '') problems.push(`admin.token_file ${config.admin.token_file} is empty`)
  if (upstreamCa !== undefined && !holdsCertificate(upstreamCa)) {
    problems.push(`upstream_ca_file ${config.upstream_ca_file} holds no PEM certificate`)
  }
  if (problems.length > 0) throw new SidekeyError('SIDEKEY_CONFIG_INVALID', problems.join('; '))
  const tokenDigest = token === undefined ? undefined : createHash('sha256').update(token.trim()).digest()
  return { tokenDigest, upstreamCa }
}

function holdsCertificate (pem: string): boolean {
  try {
    return new X509Certificate(pem).raw.length > 0
  } catch {
    return false
  }
}
