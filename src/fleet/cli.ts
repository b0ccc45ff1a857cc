import { generateKeyPairSync, createPublicKey } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import { loadOperatorConfigFile } from '../config/load.js'
import { hostPort, type FleetConfig } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import { writeFileAtomic } from '../util/atomic-write.js'
import type { Io } from '../util/io.js'
import { parseDuration } from '../util/duration.js'
import { ackDone, natsOptions, openBucket, type Ack, type Heartbeat } from './bucket.js'
import { ACTIONS, type FleetAction } from './command.js'
import { loadOperatorKeys, loadOperatorPrivateKey, parseOperatorKeys } from './keys.js'
import { fleetJwks, issueCommand, liveInstances, pruneCommands, storedCommands, values } from './operator.js'
import { FLEET_USAGE } from './usage.js'

/** What a fleet verb writes to. */
export type FleetIo = Pick<Io, 'stdout' | 'stderr'>

/** `sidekey fleet …`; exit codes: 0 done, 1 not applied everywhere (or broker failure), 2 usage or config. */
export async function fleetCommand (argv: readonly string[], io: FleetIo): Promise<number> {
  const verb = argv[0]
  if (verb === 'approvals' || verb === 'approve' || verb === 'deny') {
    return (await import('./approval-cli.js')).fleetApprovalCommand(argv, io)
  }
  let values: Record<string, string | boolean | undefined>
  try {
    ({ values } = parseArgs({
      args: argv.slice(1),
      options: {
        config: { type: 'string', short: 'c' },
        key: { type: 'string' },
        out: { type: 'string' },
        tool: { type: 'string' },
        instance: { type: 'string' },
        reason: { type: 'string' },
        actor: { type: 'string' },
        wait: { type: 'string' },
        serve: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (err) {
    return usage(io, (err as Error).message)
  }
  const str = (k: string): string | undefined => typeof values[k] === 'string' ? values[k] : undefined
  switch (verb) {
    case 'keygen': {
      const out = str('out')
      if (out === undefined) return usage(io, 'keygen needs --out DIR')
      return keygen(out, str('key'), io)
    }
    case 'status':
    case 'jwks': {
      const file = str('config')
      if (file === undefined) return usage(io, `${verb} needs --config FILE`)
      const serve = str('serve')
      if (serve !== undefined && !hostPort.safeParse(serve).success) {
        return usage(io, `--serve expects HOST:PORT, got ${JSON.stringify(serve)}`)
      }
      const fleet = await fleetOf(file)
      return withBucket(fleet, verb, (kv) => verb === 'status' ? status(kv, fleet, io) : jwks(kv, serve, io))
    }
    default: {
      if (verb === undefined || !(ACTIONS as readonly string[]).includes(verb)) {
        return usage(io, verb === undefined ? 'no fleet verb' : `unknown fleet verb ${JSON.stringify(verb)}`)
      }
      const missing = ['config', 'key', 'tool', 'reason'].filter((k) => str(k) === undefined)
      if (missing.length > 0) return usage(io, `${verb} needs ${missing.map((k) => `--${k}`).join(', ')}`)
      const waitMs = parseDuration(str('wait') ?? '10s')
      if (waitMs === undefined) {
        return usage(io, `--wait expects a duration like 10s, got ${JSON.stringify(str('wait'))}`)
      }
      const fleet = await fleetOf(str('config')!)
      const key = await loadOperatorPrivateKey(str('key')!)
      const input = {
        action: verb as FleetAction,
        tool: str('tool')!,
        instance: str('instance') ?? '*',
        reason: str('reason')!,
        actor: str('actor') ?? actorName(),
      }
      if (!/^(\*|[A-Za-z0-9_.-]{1,128})$/.test(input.tool)) {
        return usage(io, `--tool expects a tool name or '*', got ${JSON.stringify(input.tool)}`)
      }
      if (!/^(\*|[A-Za-z0-9_.-]{1,128})$/.test(input.instance)) {
        return usage(io, `--instance expects an instance id or '*', got ${JSON.stringify(input.instance)}`)
      }
      return withBucket(fleet, 'command', async (kv) => {
        const operators = await loadOperatorKeys(fleet.operator_keys)
        if (!operators.has(key.kid)) {
          io.stderr.write(`sidekey: warning: --key ${key.kid} is not among fleet.operator_keys: ` +
            'sidecars that trust the same keys reject it\n')
        }
        await pruneCommands(kv, await storedCommands(kv, operators, Date.now()), Date.now())
        const r = await issueCommand({ kv, key, input, waitMs, onAck: (a) => io.stdout.write(ackLine(a)) })
        const where = input.instance === '*' ? 'every instance' : input.instance
        io.stdout.write(`${input.action} ${input.tool} on ${where} (jti ${r.claims.jti})\n`)
        const live = new Set(r.live)
        const answers = r.acks.filter((a) => live.has(a.instance)).map((a) => a.result)
        const applied = answers.filter((a) => a === 'applied').length
        io.stdout.write(`${applied}/${r.live.length} instances applied in ${r.elapsedMs} ms${otherOutcomes(answers)}\n`)
        if (r.live.length === 0) {
          const which = input.instance === '*' ? 'in the fleet' : `named ${input.instance}`
          io.stderr.write(`sidekey: no live instance ${which}; the command is stored and applies when they connect\n`)
          return 1
        }
        const wait = str('wait') ?? '10s'
        if (r.pending.length > 0) io.stderr.write(`sidekey: no answer within ${wait} from ${r.pending.join(', ')}\n`)
        return r.pending.length === 0 && answers.every(ackDone) ? 0 : 1
      })
    }
  }
}

/** `; 1 not revocable: file issuer: ...; 3 rejected: bad_signature`: every answer but applied, counted by result. */
function otherOutcomes (results: readonly string[]): string {
  const counts = new Map<string, number>()
  for (const r of results) if (r !== 'applied') counts.set(r, (counts.get(r) ?? 0) + 1)
  return [...counts].map(([r, n]) => `; ${n} ${r.replace(/^[a-z_]+/, (kind) => kind.replaceAll('_', ' '))}`).join('')
}

function ackLine (a: Ack): string {
  const lag = a.lag_ms === undefined ? '' : `${a.lag_ms} ms`
  const line = `${ackDone(a.result) ? 'ok  ' : 'FAIL'} ${a.instance.padEnd(24)} ${a.result.padEnd(16)} ${lag}\n`
  return line.replace(/ +\n$/, '\n')
}

async function keygen (out: string, keyFile: string | undefined, io: FleetIo): Promise<number> {
  await mkdir(out, { recursive: true, mode: 0o700 })
  let publicPem: string
  if (keyFile === undefined) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const privateFile = join(out, 'operator.pem')
    const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' })
    await writeFile(privateFile, pem, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      throw new SidekeyError('SIDEKEY_CONFIG_INVALID', err.code === 'EEXIST'
        ? `${privateFile} exists: not overwritten`
        : `${privateFile} cannot be written (${err.code ?? 'error'})`)
    })
    io.stderr.write(`private key: ${privateFile} (mode 0600; keep it off the cluster)\n`)
    publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  } else {
    const privateKey = (await loadOperatorPrivateKey(keyFile)).key
    publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString()
  }
  const pub = [...(await parseOperatorKeys(publicPem, 'key')).values()][0]!
  const jwks = JSON.stringify({ keys: [pub.jwk] }, null, 2) + '\n'
  await writeFileAtomic(join(out, 'operators.jwks'), jwks, 0o644)
  io.stderr.write(`public JWKS: ${join(out, 'operators.jwks')} (add its key to fleet.operator_keys)\n`)
  io.stdout.write(jwks)
  return 0
}

async function status (kv: KV, fleet: FleetConfig, io: FleetIo): Promise<number> {
  const now = Date.now()
  const live = new Set((await liveInstances(kv, now)).map((h) => h.instance))
  const beats = (await values<Heartbeat>(kv, 'hb.>')).sort((a, b) => a.instance.localeCompare(b.instance))
  io.stdout.write(`instances (${live.size} live of ${beats.length} seen):\n`)
  for (const hb of beats) {
    const age = Math.round((now - Date.parse(hb.last_seen)) / 1000)
    const state = live.has(hb.instance) ? 'live ' : 'stale'
    io.stdout.write(`  ${hb.instance.padEnd(24)} ${state} last seen ${age}s ago  version ${hb.version}\n`)
    for (const l of hb.locks) io.stdout.write(`      locked ${l.tool} by ${l.actor} at ${l.at}: ${l.reason}\n`)
  }
  const acks = await values<Ack>(kv, 'ack.>')
  const stored = await storedCommands(kv, await loadOperatorKeys(fleet.operator_keys), now)
  io.stdout.write(`commands (${stored.length} in the bucket):\n`)
  for (const s of stored.slice(-20)) {
    const c = s.command
    if (c === undefined) {
      io.stdout.write(`  ${s.key} REJECTED (${s.reason})\n`)
      continue
    }
    const mine = acks.filter((a) => a.jti === c.jti)
    const applied = mine.filter((a) => ackDone(a.result)).length
    io.stdout.write(`  ${new Date(c.iat * 1000).toISOString()} ${c.action.padEnd(6)} ${c.tool} on ${c.instance} ` +
      `by ${c.actor}: ${c.reason}  acks ${applied} applied, ${mine.length - applied} not\n`)
  }
  return 0
}

async function jwks (kv: KV, serve: string | undefined, io: FleetIo): Promise<number> {
  if (serve === undefined) {
    io.stdout.write(JSON.stringify(await fleetJwks(kv), null, 2) + '\n')
    return 0
  }
  let current = JSON.stringify(await fleetJwks(kv))
  const watch = await kv.watch({ key: 'jwks.>', include: 'updates_only' as never })
  void (async () => { for await (const _ of watch) current = JSON.stringify(await fleetJwks(kv)) })()
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/' && req.url !== '/.well-known/jwks.json')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}')
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=5' }).end(current)
  })
  const i = serve.lastIndexOf(':')
  const host = serve.slice(0, i).replace(/^\[|\]$/g, '')
  await new Promise<void>((resolve) => server.listen(Number(serve.slice(i + 1)), host, resolve))
  const a = server.address() as { address: string, port: number }
  const shown = a.address.includes(':') ? `[${a.address}]` : a.address
  io.stdout.write(`serving the fleet JWKS on http://${shown}:${a.port}/.well-known/jwks.json\n`)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  watch.stop()
  await new Promise((resolve) => server.close(resolve))
  return 0
}

/** The `fleet:` section of an operator's config (only that section is read: a sidecar's whole config works too). */
export async function fleetOf (file: string): Promise<FleetConfig> {
  return (await loadOperatorConfigFile(file)).fleet
}

/** Connects once (a CLI does not wait for a broker that is down), runs `fn`, closes. */
export async function withBucket (fleet: FleetConfig, what: string, fn: (kv: KV) => Promise<number>): Promise<number> {
  let nc: NatsConnection
  let kv: KV
  try {
    const options = await natsOptions(fleet, `sidekey-cli ${what}`)
    ;({ nc, kv } = await openBucket(fleet, { ...options, maxReconnectAttempts: 1, timeout: 5000 }))
  } catch (err) {
    if (err instanceof SidekeyError) throw err
    const why = (err as { code?: string }).code ?? (err as Error).message
    const servers = fleet.nats.servers.join(', ')
    throw new SidekeyError('SIDEKEY_INTERNAL', `cannot reach the fleet broker ${servers} (${why})`)
  }
  try {
    return await fn(kv)
  } finally {
    await nc.close().catch(() => {})
  }
}

function usage (io: FleetIo, message: string): number {
  io.stderr.write(`sidekey: ${message}\n${FLEET_USAGE}\n`)
  return 2
}

function actorName (): string {
  try { return process.env.USER ?? userInfo().username } catch { return 'operator' }
}
