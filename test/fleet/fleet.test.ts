import t from 'tap'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { CompactSign } from 'jose'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats, startPartition } from '../helpers/nats.js'
import { operatorKey, percentile, testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { issueCommand } from '../../src/fleet/operator.js'
import { signCommand, type CommandInput } from '../../src/fleet/command.js'
import { KEYS } from '../../src/fleet/bucket.js'

/**
 * Fleet control against a real nats-server (JetStream): 20 sidekeys in this process, each with its own instance
 * id and NATS connection, one bucket. Locks are pushed, acknowledged, survive a broker outage and a restart.
 */
const nats = await natsBinary
t.test('fleet control over NATS JetStream', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const operator = await operatorKey('ES256')
  const kv = await testBucket(t, broker.url)
  const up = await startUpstream()
  t.teardown(() => up.close())
  const stateDir = mkdtempSync(join(tmpdir(), 'sidekey-fleet-state-'))

  const yaml = (id: string, servers = broker.url): string => `
instance_id: ${id}
ca: { dir: {{CA_DIR}} }
resolve: { api.test: 127.0.0.1, other.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.test, port: ${up.port} }, issuer: local, plaintext: true }
  other: { match: { host: other.test, port: ${up.port} }, issuer: local, plaintext: true }
fleet:
  nats: { servers: [${servers}] }
  operator_keys: ${operator.jwksFile}
  state_file: ${join(stateDir, `${id}.json`)}
  heartbeat: 1s
  required: true
`
  const N = 20
  const fleet: RunningSidekey[] = []
  for (let i = 0; i < N; i++) fleet.push(await startSidekey(t, yaml(`agent-${i}`)))
  await Promise.all(fleet.map((sk) => sk.app.fleet!.synced()))
  const agents = fleet.map((sk) => {
    const a = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
    t.teardown(() => a.close())
    return a
  })
  const call = async (i: number, host = 'api.test'): Promise<{ status: number, body: string }> => {
    const res = await request(`http://${host}:${up.port}/v1/x`, { dispatcher: agents[i]! })
    return { status: res.statusCode, body: await res.body.text() }
  }
  const issue = (input: Partial<CommandInput> & Pick<CommandInput, 'action'>, waitMs = 10_000) =>
    issueCommand({ kv, key: operator.key, waitMs, input: { tool: 'api', instance: '*', actor: 'test', reason: 'fleet test', ...input } })
  // Every instance has written its heartbeat once connected.
  await until(async () => (await kv.get(KEYS.heartbeat('agent-19'))) !== null, 'heartbeats')

  t.test('lock --tool api --instance *: all 20 refuse api, acknowledge, and serve other tools', async (t) => {
    for (let i = 0; i < N; i++) t.equal((await call(i)).status, 200)
    const r = await issue({ action: 'lock', reason: 'key leaked' })
    t.equal(r.live.length, N, 'all 20 live by heartbeat')
    t.same(r.pending, [], 'every instance acknowledged')
    t.equal(r.acks.filter((a) => a.result === 'applied').length, N)
    for (let i = 0; i < N; i++) {
      const res = await call(i)
      t.equal(res.status, 403)
      const body = JSON.parse(res.body) as Record<string, unknown>
      t.same(Object.keys(body).sort(), ['error', 'request_id', 'tool'])
      t.match(body, { error: 'tool_locked', tool: 'api' })
      t.equal((await call(i, 'other.test')).status, 200, 'other tools keep working')
    }
    const before = up.seen.length
    await call(3)
    t.equal(up.seen.length, before, 'a locked call never reaches the upstream')
    t.match(fleet[3]!.log.events('credential.used').at(-1), { tool: 'api', status: 403, outcome: 'locked', credential_id: null })
    t.match(fleet[3]!.log.events('fleet.command').at(-1), { action: 'lock', tool: 'api', instance: '*', jti: r.claims.jti, actor: 'test', kid: operator.key.kid, reason: 'key leaked', result: 'applied' })
    const status = await (await request(`${fleet[5]!.adminUrl}/status`)).body.json() as { fleet: { locks: Array<Record<string, unknown>> } }
    t.match(status.fleet.locks, [{ tool: 'api', actor: 'test', reason: 'key leaked', jti: r.claims.jti }])
    t.equal((await request(`${fleet[5]!.adminUrl}/readyz`)).statusCode, 200, 'a lock never fails /readyz')
    const metrics = await (await request(`${fleet[5]!.adminUrl}/metrics`)).body.text()
    t.match(metrics, /sidekey_fleet_connected 1/)
    t.match(metrics, /sidekey_fleet_commands_total\{action="lock",result="applied"\} 1/)
  })

  t.test('propagation over 10 commands: publish → applied on every instance', async (t) => {
    const lags: number[] = []
    for (let k = 0; k < 10; k++) {
      const r = await issue({ action: k % 2 === 0 ? 'lock' : 'unlock', tool: 'api' })
      t.same(r.pending, [], `command ${k}: every instance applied`)
      for (const a of r.acks) lags.push(a.lag_ms!)
    }
    lags.sort((a, b) => a - b)
    t.equal(lags.length, N * 10)
    t.comment(`propagation over ${N} instances × 10 commands (ms, broker stored → applied): p50 ${percentile(lags, 50)} p99 ${percentile(lags, 99)} max ${lags.at(-1)}`)
    // The last of the ten was an unlock (the first re-locked what was locked): service is back everywhere.
    for (let i = 0; i < N; i++) t.equal((await call(i)).status, 200, `agent-${i} serves api again`)
  })

  t.test('forged, expired, replayed, mis-addressed and malformed commands are applied nowhere', async (t) => {
    const seenBefore = fleet.map((sk) => sk.log.events('fleet.command').length)
    const intruder = await operatorKey('ES256')
    const now = Date.now()
    const lock: CommandInput = { action: 'lock', tool: 'api', instance: '*', actor: 'mallory', reason: 'forged' }
    const forged = await signCommand(lock, intruder.key)
    const wrongSig = await signCommand(lock, { ...intruder.key, kid: operator.key.kid })
    const expired = await signCommand(lock, operator.key, now - 20 * 60_000)
    const future = await signCommand(lock, operator.key, now + 5 * 60_000)
    // A lifetime over 10 minutes: the CLI never signs one.
    const long = await new CompactSign(new TextEncoder().encode(JSON.stringify({ ...lock, jti: 'longlived0001', iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 3600 })))
      .setProtectedHeader({ alg: operator.key.alg, kid: operator.key.kid }).sign(operator.key.key)
    const ghost = await signCommand({ ...lock, instance: 'ghost' }, operator.key)
    const valid = await signCommand({ ...lock, tool: 'other', action: 'unlock', reason: 'harmless' }, operator.key)
    const cases: Array<[string, string, string]> = [
      [forged.claims.jti, forged.jws, 'unknown_key'],
      [wrongSig.claims.jti, wrongSig.jws, 'bad_signature'],
      [expired.claims.jti, expired.jws, 'expired'],
      [future.claims.jti, future.jws, 'not_yet_valid'],
      ['longlived0001', long, 'lifetime_too_long'],
      ['malformed0001', 'not.a-jws', 'malformed'],
      ['mismatch00001', valid.jws, 'key_mismatch'],
    ]
    for (const [jti, jws] of cases) await kv.create(KEYS.command(jti), jws)
    await kv.create(KEYS.command(ghost.claims.jti), ghost.jws)
    await kv.create(KEYS.command(valid.claims.jti), valid.jws)
    // The same signed command stored again under its key: a replay.
    await kv.put(KEYS.command(valid.claims.jti), valid.jws)
    const expectAll = cases.length + 3
    await until(() => fleet.every((sk, i) => sk.log.events('fleet.command').length >= seenBefore[i]! + expectAll), 'every instance saw every command')
    for (const [i, sk] of fleet.entries()) {
      await sk.app.audit.settled()
      t.equal((await call(i)).status, 200, `agent-${i}: api still served`)
      const events = sk.log.events('fleet.command').slice(-expectAll)
      for (const [jti, , reason] of cases) t.ok(events.some((e) => e.result === 'rejected' && e.error === reason && e.jti === jti), `agent-${i} audited ${reason}`)
      t.ok(events.some((e) => e.result === 'rejected' && e.error === 'replayed' && e.jti === valid.claims.jti), `agent-${i} audited the replay`)
      t.ok(events.some((e) => e.result === 'not_addressed' && e.jti === ghost.claims.jti), `agent-${i} ignored the command for another instance`)
      const kinds = sk.log.events('anomaly').filter((a) => a.kind === 'fleet_command_rejected').map((a) => String(a.detail).split(':')[0])
      t.same(new Set(kinds), new Set([...cases.map((c) => c[2]), 'replayed']), `agent-${i} raised one anomaly per rejection`)
    }
  })

  t.test('broker killed mid-run: traffic flows with no failed call; a partitioned sidecar catches up on reconnect', async (t) => {
    const partition = await startPartition(t, broker.port)
    const cutOff = await startSidekey(t, yaml('agent-cut', partition.url))
    await cutOff.app.fleet!.synced()
    const cutAgent = new ProxyAgent({ uri: cutOff.proxyUrl, proxyTunnel: false })
    t.teardown(() => cutAgent.close())

    let failed = 0
    let calls = 0
    let running = true
    const traffic = (async () => {
      while (running) {
        const results = await Promise.all(fleet.map((_, i) => call(i, 'other.test').then((r) => r.status, () => 0)))
        calls += results.length
        failed += results.filter((s) => s !== 200).length
      }
    })()
    const stopAt = performance.now()
    await broker.stop()
    await until(() => fleet.every((sk) => !sk.app.fleet!.connected), 'every sidecar noticed the outage')
    const callsBefore = calls
    await until(() => calls >= callsBefore + N * 5, 'traffic during the outage')
    await broker.start()
    await until(() => fleet.every((sk) => sk.app.fleet!.connected), 'every sidecar reconnected', 20_000)
    // JetStream answers a little after the server accepts connections again.
    await until(() => kv.status().then(() => true, () => false), 'JetStream answering again', 20_000)
    const outageMs = Math.round(performance.now() - stopAt)
    running = false
    await traffic
    t.equal(failed, 0, `no failed call out of ${calls} during a ${outageMs} ms outage`)
    t.comment(`broker outage: ${outageMs} ms from kill to all 20 reconnected; ${calls} proxied calls, ${failed} failed`)

    partition.cut()
    await until(() => !cutOff.app.fleet!.connected, 'the partitioned sidecar noticed')
    const r = await issue({ action: 'lock', tool: 'other', reason: 'while partitioned' }, 3000)
    t.same(r.pending, ['agent-cut'], 'the 20 connected instances applied it; the partitioned one, live by its last heartbeat, is named')
    t.equal((await request(`http://other.test:${up.port}/x`, { dispatcher: cutAgent })).statusCode, 200, 'not yet applied behind the partition')
    const healedAt = performance.now()
    partition.heal()
    await until(async () => (await kv.get(KEYS.ack(r.claims.jti, 'agent-cut'))) !== null, 'the partitioned sidecar acknowledged', 20_000)
    t.comment(`catch-up: partitioned sidecar applied the missed lock ${Math.round(performance.now() - healedAt)} ms after the partition healed`)
    const res = await request(`http://other.test:${up.port}/x`, { dispatcher: cutAgent })
    t.equal(res.statusCode, 403)
    t.match(await res.body.json(), { error: 'tool_locked', tool: 'other' })
    await issue({ action: 'unlock', tool: 'other', reason: 'done' })
  })

  t.test('a sidecar restarted with an active lock refuses from its first request, broker or not', async (t) => {
    const first = await startSidekey(t, yaml('agent-restart'))
    await first.app.fleet!.synced()
    await issue({ action: 'lock', tool: 'api', instance: 'agent-restart', reason: 'restart test' })
    t.ok(first.app.fleet!.lockOf('api'))
    await first.app.close()
    t.match(JSON.parse(readFileSync(join(stateDir, 'agent-restart.json'), 'utf8')), { version: 1, commands: [{ stored_at: Number }] })
    await broker.stop()
    t.teardown(() => broker.start())
    const again = await startSidekey(t, yaml('agent-restart').replace('required: true', 'required: false'))
    const agent = new ProxyAgent({ uri: again.proxyUrl, proxyTunnel: false })
    t.teardown(() => agent.close())
    const res = await request(`http://api.test:${up.port}/v1/x`, { dispatcher: agent })
    t.equal(res.statusCode, 403, 'the first request after the restart is refused')
    t.match(await res.body.json(), { error: 'tool_locked', tool: 'api' })
    t.equal((await request(`${again.adminUrl}/readyz`)).statusCode, 200, 'required: false is ready without the broker')
    const strict = await startSidekey(t, yaml('agent-strict'))
    const ready = await request(`${strict.adminUrl}/readyz`)
    t.equal(ready.statusCode, 503, 'required: true is not ready before the bucket was read')
    t.match(await ready.body.json(), { ready: false, fleet: 'not_synced' })
  })
})
