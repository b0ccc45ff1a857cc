import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { request, ProxyAgent } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { operatorKey, testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { signCommand } from '../../src/fleet/command.js'
import { KEYS } from '../../src/fleet/bucket.js'
import { fleetApprovalCommand } from '../../src/fleet/approval-cli.js'

/**
 * Operators approve held calls across the fleet with signed commands: three sidecars on a real nats-server, each
 * publishing its held calls to the bucket; an approval releases exactly the call it names.
 */
const nats = await natsBinary
t.test('fleet approvals over NATS JetStream', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const operator = await operatorKey('ES256')
  const stranger = await operatorKey('ES256')
  const kv = await testBucket(t, broker.url)
  const up = await startUpstream()
  t.teardown(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-fleet-approvals-'))
  const operatorFile = join(dir, 'operator.yaml')
  writeFileSync(operatorFile, `fleet: { nats: { servers: [${broker.url}] }, operator_keys: ${operator.jwksFile} }\n`)
  const yaml = (id: string): string => `
instance_id: ${id}
ca: { dir: {{CA_DIR}} }
resolve: { mail.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  mail:
    match: { host: mail.test, port: ${up.port} }
    issuer: local
    plaintext: true
    approve: [{ methods: [POST], path_prefix: /send }]
    approval: { timeout: 60s }
fleet:
  nats: { servers: [${broker.url}] }
  operator_keys: ${operator.jwksFile}
  state_file: ${join(dir, `${id}.json`)}
  heartbeat: 1s
`
  const fleet: RunningSidekey[] = []
  for (const id of ['side-0', 'side-1', 'side-2']) fleet.push(await startSidekey(t, yaml(id)))
  await Promise.all(fleet.map((sk) => sk.app.fleet!.synced()))
  const send = (i: number, body: string): Promise<{ status: number, body: string }> => {
    const agent = new ProxyAgent({ uri: fleet[i]!.proxyUrl, proxyTunnel: false })
    const headers = { 'content-type': 'application/json' }
    return request(`http://mail.test:${up.port}/send`, { method: 'POST', dispatcher: agent, body, headers })
      .then(async (res) => ({ status: res.statusCode, body: await res.body.text() }))
      .finally(() => { void agent.close() })
  }
  const cli = async (...args: string[]): Promise<{ code: number, out: string }> => {
    let out = ''
    const sink = new Writable({ write (c: Buffer, _e, cb) { out += c.toString(); cb() } })
    const code = await fleetApprovalCommand(args, { stdout: sink, stderr: sink })
    return { code, out }
  }
  const requested = (i: number) => fleet[i]!.log.events('approval.requested')
  const rejected = (i: number) => fleet[i]!.log.events('fleet.command').filter((e) => e.result === 'rejected')
  const anomalies = (i: number) => fleet[i]!.log.events('anomaly').filter((e) => e.kind === 'fleet_command_rejected')

  const body = '{"to":"bob@example.com","text":"the numbers"}'
  const calls = [send(0, body), send(1, body), send(2, '{"to":"eve@example.com"}')]
  await until(() => [0, 1, 2].every((i) => requested(i).length === 1), 'three held calls')
  const ids = [0, 1, 2].map((i) => requested(i)[0]!.id as string)
  const listed = async (): Promise<string[]> =>
    (await cli('approvals', '--config', operatorFile)).out.split('\n').filter((l) => l.startsWith('apr_'))
  await until(async () => (await listed()).length === 3, 'three approvals in the bucket')
  t.equal(up.seen.length, 0, 'nothing sent')

  const decide = (verb: string, id: string, ...more: string[]) =>
    cli(verb, id, '--config', operatorFile, '--key', operator.pemFile, ...more)
  const approved = await decide('approve', ids[1]!, '--reason', 'checked')
  t.equal(approved.code, 0, approved.out)
  const released = await calls[1]!
  t.equal(released.status, 200, 'the named call went through')
  t.equal(up.seen.length, 1, 'exactly one call sent')
  t.match(up.seen[0]!.headers.authorization, /^Bearer ey/, 'with the credential')
  t.match(fleet[1]!.log.events('approval.granted')[0], { id: ids[1], by: operator.key.kid, reason: 'checked' })
  const granted = [0, 2].map((i) => fleet[i]!.log.events('approval.granted').length)
  t.same(granted, [0, 0], 'the same body on side-0 still waits')

  // Forged: a key the fleet does not trust.
  const command = (instance: number, approval: number, hashOf: number) => ({
    action: 'approve' as const,
    tool: 'mail',
    instance: `side-${instance}`,
    actor: 'x',
    reason: 'x',
    approval: ids[approval],
    body_sha256: requested(hashOf)[0]!.body_sha256 as string,
  })
  const forged = await signCommand(command(0, 0, 0), stranger.key)
  await kv.create(KEYS.command(forged.claims.jti), forged.jws)
  await until(() => rejected(0).length === 1, 'forged approval rejected')
  t.match(rejected(0)[0], { error: 'unknown_key', action: 'approve' })
  t.equal(anomalies(0).length, 1, 'fleet_command_rejected raised')

  // Replayed: side-1's approval, signed again for side-0's call (another hash), and side-1's used one again.
  const wrongHash = await signCommand(command(0, 0, 2), operator.key)
  await kv.create(KEYS.command(wrongHash.claims.jti), wrongHash.jws)
  await until(() => rejected(0).length === 2, 'mismatched approval rejected')
  t.match(rejected(0)[1], { error: 'approval_mismatch' })
  const again = await signCommand(command(1, 1, 1), operator.key)
  await kv.create(KEYS.command(again.claims.jti), again.jws)
  await until(() => rejected(1).some((e) => e.error === 'unknown_approval'), 'used approval rejected')
  t.equal(anomalies(1).length, 2, 'side-1 raised one for the forged command (every sidecar checks it) and one here')
  t.equal(up.seen.length, 1, 'still one call sent')

  const denied = await decide('deny', ids[0]!)
  t.equal(denied.code, 0, denied.out)
  const refused = await calls[0]!
  t.equal(refused.status, 403)
  t.match(JSON.parse(refused.body), { error: 'approval_denied', by: operator.key.kid })
  await decide('deny', ids[2]!)
  t.equal((await calls[2]!).status, 403)
  t.equal(up.seen.length, 1)
})
