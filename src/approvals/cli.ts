import { parseArgs } from 'node:util'
import { loadConfigFile } from '../config/load.js'
import { hostPort } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import { readAdminToken } from '../admin/token.js'
import { dialable, type AdminIo } from '../admin/cli.js'
import type { PendingView } from './desk.js'
import { APPROVALS_USAGE } from './usage.js'

/** `sidekey approvals …`; exit codes: 0 done, 1 refused, unknown or unreachable, 2 usage or config. */
export async function approvalsCommand (argv: readonly string[], io: AdminIo): Promise<number> {
  const env = io.env ?? process.env
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string', short: 'c' },
        admin: { type: 'string' },
        reason: { type: 'string' },
        json: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: true,
    })
  } catch (err) {
    io.stderr.write(`sidekey: ${(err as Error).message}\n${APPROVALS_USAGE}\n`)
    return 2
  }
  const { values, positionals: [verb, id, ...extra] } = parsed
  const deciding = verb === 'approve' || verb === 'deny'
  const shape = verb === 'list' ? id === undefined : deciding && id !== undefined
  if (!shape || extra.length > 0 || (values.admin !== undefined && !hostPort.safeParse(values.admin).success)) {
    io.stderr.write(APPROVALS_USAGE + '\n')
    return 2
  }
  const config = await loadConfigFile(values.config ?? env.SIDEKEY_CONFIG ?? 'config/sidekey.yaml', env)
  const route = deciding ? `/approvals/${encodeURIComponent(id!)}` : '/approvals'
  const url = `http://${dialable(values.admin ?? config.admin.listen)}${route}`
  const headers: Record<string, string> = { authorization: `Bearer ${await readAdminToken(config)}` }
  const decision = { decision: verb, ...(values.reason === undefined ? {} : { reason: values.reason }) }
  let res: Response
  try {
    res = await fetch(url, {
      method: deciding ? 'POST' : 'GET',
      headers: { ...headers, 'content-type': 'application/json' },
      ...(deciding ? { body: JSON.stringify(decision) } : {}),
      signal: AbortSignal.timeout(30_000),
    })
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name
    throw new SidekeyError('SIDEKEY_INTERNAL', `cannot reach the admin port at ${url} (${code})`, { cause: err })
  }
  const text = await res.text()
  if (!res.ok) {
    io.stderr.write(`sidekey: ${deciding ? `${verb} ${id!}` : 'list'} answered ${res.status}: ${text}\n`)
    return 1
  }
  const shown = deciding || values.json === true ? text : listing(JSON.parse(text) as { approvals: PendingView[] })
  io.stdout.write(shown + '\n')
  return 0
}

/** One line per held call, newest last: what a human needs to decide, and the id to decide it by. */
function listing (body: { approvals: PendingView[] }): string {
  if (body.approvals.length === 0) return 'no calls wait for approval'
  return body.approvals.map((a) => {
    const mcp = a.mcp === undefined ? '' : ` mcp ${a.mcp.method}${a.mcp.name === undefined ? '' : ` ${a.mcp.name}`}`
    return `${a.id}  ${a.state}  ${a.tool}  ${a.method} ${a.host}${a.path}${mcp}  ` +
      `sha256:${a.body_sha256.slice(0, 12)}  ` +
      `${a.body_bytes} B  ${JSON.stringify(a.preview)}`
  }).join('\n')
}
