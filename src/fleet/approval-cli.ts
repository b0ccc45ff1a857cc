import { userInfo } from 'node:os'
import { parseArgs } from 'node:util'
import type { ApprovalRequested } from '../audit/events.js'
import { parseDuration } from '../util/duration.js'
import { ackDone } from './bucket.js'
import { approvalKey } from './approvals.js'
import { fleetOf, withBucket, type FleetIo } from './cli.js'
import { loadOperatorPrivateKey } from './keys.js'
import { issueCommand, values } from './operator.js'
import { FLEET_APPROVAL_USAGE } from './usage.js'

/**
 * `sidekey fleet approvals|approve|deny`: the calls held across the fleet (published by each sidecar), and a signed
 * decision naming one of them by id, tool, instance and body hash. Exit codes: 0 applied, 1 not, 2 usage.
 */
export async function fleetApprovalCommand (argv: readonly string[], io: FleetIo): Promise<number> {
  const verb = argv[0]
  let parsed
  try {
    parsed = parseArgs({
      args: argv.slice(1),
      options: {
        config: { type: 'string', short: 'c' },
        key: { type: 'string' },
        reason: { type: 'string' },
        actor: { type: 'string' },
        wait: { type: 'string' },
      },
      strict: true,
      allowPositionals: true,
    })
  } catch (err) {
    return usage(io, (err as Error).message)
  }
  const { values: opts, positionals } = parsed
  if (opts.config === undefined) return usage(io, `${verb ?? ''} needs --config FILE`)
  const fleet = await fleetOf(opts.config)
  if (verb === 'approvals') {
    if (positionals.length > 0) return usage(io, 'approvals takes no argument')
    return withBucket(fleet, 'approvals', async (kv) => {
      const held = await values<ApprovalRequested>(kv, 'apr.>')
      held.sort((a, b) => a.timeout_at.localeCompare(b.timeout_at))
      for (const a of held) {
        io.stdout.write(`${a.id}  ${a.instance}  ${a.tool}  ${a.method} ${a.host}${a.path}  ` +
          `sha256:${a.body_sha256.slice(0, 12)}  ` +
          `times out ${a.timeout_at}  ${JSON.stringify(a.preview)}\n`)
      }
      if (held.length === 0) io.stdout.write('no calls wait for approval\n')
      return 0
    })
  }
  const id = positionals[0]
  if (id === undefined || positionals.length > 1 || opts.key === undefined) {
    return usage(io, `${verb ?? ''} needs ID and --key KEY`)
  }
  const waitMs = parseDuration(opts.wait ?? '10s')
  if (waitMs === undefined) return usage(io, `--wait expects a duration like 10s, got ${JSON.stringify(opts.wait)}`)
  const key = await loadOperatorPrivateKey(opts.key)
  return withBucket(fleet, verb!, async (kv) => {
    const entry = await kv.get(approvalKey(id)).catch(() => null)
    if (entry === null || entry.operation !== 'PUT') {
      io.stderr.write(`sidekey: no call waits for approval ${id} in the fleet bucket\n`)
      return 1
    }
    const held = entry.json<ApprovalRequested>()
    const input = {
      action: verb as 'approve' | 'deny',
      tool: held.tool,
      instance: held.instance,
      actor: opts.actor ?? userInfo().username,
      reason: opts.reason ?? (verb === 'approve' ? 'approved' : 'denied'),
      approval: held.id,
      body_sha256: held.body_sha256,
    }
    const r = await issueCommand({ kv, key, input, waitMs })
    const ack = r.acks.find((a) => a.instance === held.instance)
    const what = `${held.tool} on ${held.instance}, jti ${r.claims.jti}`
    io.stdout.write(`${verb} ${held.id} (${what}): ${ack?.result ?? 'no answer'}\n`)
    if (ack !== undefined && ackDone(ack.result)) await kv.delete(approvalKey(held.id)).catch(() => {})
    return ack !== undefined && ackDone(ack.result) ? 0 : 1
  })
}

function usage (io: FleetIo, message: string): number {
  io.stderr.write(`sidekey: ${message}\n${FLEET_APPROVAL_USAGE}\n`)
  return 2
}
