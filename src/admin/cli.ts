import { parseArgs } from 'node:util'
import { loadConfigFile } from '../config/load.js'
import { hostPort } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import { readAdminToken } from './token.js'
import type { Io } from '../util/io.js'
import { ADMIN_USAGE } from './usage.js'

/** What an admin-port verb writes to, and the environment its config reads (the process's when absent). */
export type AdminIo = Pick<Io, 'stdout' | 'stderr'> & Partial<Pick<Io, 'env'>>

/** `sidekey admin …`; exit codes: 0 done, 1 refused or unreachable, 2 usage or config. */
export async function adminCommand (argv: readonly string[], io: AdminIo): Promise<number> {
  const env = io.env ?? process.env
  let parsed: { values: { config?: string, admin?: string, 'revoke-previous'?: boolean }, positionals: string[] }
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string', short: 'c' }, admin: { type: 'string' }, 'revoke-previous': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: true,
    })
  } catch (err) {
    io.stderr.write(`sidekey: ${(err as Error).message}\n${ADMIN_USAGE}\n`)
    return 2
  }
  const [verb, tool, ...extra] = parsed.positionals
  const { values } = parsed
  const route = verb === 'status'
    ? '/status'
    : verb === 'reload'
      ? '/reload'
      : verb === 'rotate' && tool !== undefined ? `/rotate/${encodeURIComponent(tool)}` : undefined
  const badAdmin = values.admin !== undefined && !hostPort.safeParse(values.admin).success
  if (route === undefined || extra.length > 0 || (verb !== 'rotate' && tool !== undefined) || badAdmin) {
    io.stderr.write(ADMIN_USAGE + '\n')
    return 2
  }
  const config = await loadConfigFile(values.config ?? env.SIDEKEY_CONFIG ?? 'config/sidekey.yaml', env)
  const query = values['revoke-previous'] === true ? '?revoke=previous' : ''
  const url = `http://${dialable(values.admin ?? config.admin.listen)}${route}${query}`
  // Reads need no token, so status works for a user who cannot read it.
  const headers: Record<string, string> = verb === 'status'
    ? {}
    : { authorization: `Bearer ${await readAdminToken(config)}` }
  let res: Response
  try {
    res = await fetch(url, { method: verb === 'status' ? 'GET' : 'POST', headers, signal: AbortSignal.timeout(30_000) })
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name
    throw new SidekeyError('SIDEKEY_INTERNAL', `cannot reach the admin port at ${url} (${code})`, { cause: err })
  }
  const text = await res.text()
  if (res.ok) {
    io.stdout.write(text + '\n')
    return 0
  }
  const retry = res.headers.get('retry-after')
  const after = retry === null ? '' : ` (retry after ${retry} s)`
  io.stderr.write(`sidekey: ${route} answered ${res.status}${after}: ${text}\n`)
  return 1
}

/** The address to dial for a listen address: a wildcard listener is reached on loopback. */
export function dialable (listen: string): string {
  if (listen.startsWith('0.0.0.0:')) return `127.0.0.1:${listen.slice('0.0.0.0:'.length)}`
  if (listen.startsWith('[::]:')) return `[::1]:${listen.slice('[::]:'.length)}`
  return listen
}
