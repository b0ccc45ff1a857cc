import t, { type Test } from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import { startUpstream, type Upstream } from '../helpers/upstream.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { operatorKey, testBucket, until, type OperatorKeyFiles } from '../helpers/fleet.js'
import { issueCommand } from '../../src/fleet/operator.js'
import { KEYS } from '../../src/fleet/bucket.js'

/**
 * The command watcher cannot die quietly: with the bucket's stream deleted under a connected fleet, or the NATS
 * connection closed for good, each sidecar logs the outage once, reports `synced: false` and
 * `sidekey_fleet_watching 0`, retries, and when the bucket answers again applies what was stored meanwhile, once.
 */
const LOST = 'fleet: not watching commands; a lock or revocation stored now is applied once watching again'
const BACK = 'fleet: watching commands again'

interface Sidecar { readonly sk: RunningSidekey, readonly call: () => Promise<{ status: number, body: string }> }

function sidecarYaml (id: string, up: Upstream, operator: OperatorKeyFiles, nats: string, stateDir: string): string {
  return `
instance_id: ${id}
ca: { dir: {{CA_DIR}} }
resolve: { api.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.test, port: ${up.port} }, issuer: local, plaintext: true }
fleet:
  nats: ${nats}
  operator_keys: ${operator.jwksFile}
  state_file: ${join(stateDir, `${id}.json`)}
  heartbeat: 1s
  required: true
`
}

async function sidecar (t: Test, yaml: string, port: number): Promise<Sidecar> {
  const sk = await startSidekey(t, yaml)
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => agent.close())
  const call = async (): Promise<{ status: number, body: string }> => {
    const res = await request(`http://api.test:${port}/v1/x`, { dispatcher: agent })
    return { status: res.statusCode, body: await res.body.text() }
  }
  return { sk, call }
}

async function fleetStatus (sk: RunningSidekey): Promise<{ connected: boolean, synced: boolean }> {
  const body = await (await request(`${sk.adminUrl}/status`)).body.json() as { fleet: { connected: boolean, synced: boolean } }
  return body.fleet
}

async function watchingGauge (sk: RunningSidekey): Promise<string | undefined> {
  const text = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  return /^sidekey_fleet_watching (\d)$/m.exec(text)?.[1]
}

const lines = (sk: RunningSidekey, msg: string): Array<Record<string, unknown>> => sk.log.lines.filter((l) => l.msg === msg)

const nats = await natsBinary
t.test('the command watcher is supervised', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const operator = await operatorKey('ES256')
  const up = await startUpstream()
  t.teardown(() => up.close())
  const stateDir = mkdtempSync(join(tmpdir(), 'sidekey-fleet-watch-'))

  t.test('the bucket stream deleted under 3 connected sidecars, then recreated by the operator CLI', async (t) => {
    const broker = await startNats(t, nats.path!)
    const nc = await connect({ servers: broker.url, name: 'test admin' })
    t.teardown(() => nc.close())
    const jsm = await jetstreamManager(nc)
    const fleet = await Promise.all([0, 1, 2].map((i) => sidecar(t, sidecarYaml(`watch-${i}`, up, operator, `{ servers: [${broker.url}] }`, stateDir), up.port)))
    await Promise.all(fleet.map((s) => s.sk.app.fleet!.synced()))
    for (const s of fleet) {
      t.equal((await s.call()).status, 200)
      t.equal(await watchingGauge(s.sk), '1', 'watching once the bucket was read')
    }

    await jsm.streams.delete('KV_sidekey')
    await until(async () => (await Promise.all(fleet.map(async (s) => (await fleetStatus(s.sk)).synced))).every((x) => !x), 'every sidecar reports synced: false', 20_000)
    for (const [i, s] of fleet.entries()) {
      t.match(await fleetStatus(s.sk), { connected: true, synced: false }, `watch-${i}: connected, honestly not synced`)
      t.equal(await watchingGauge(s.sk), '0', `watch-${i}: sidekey_fleet_watching 0`)
      t.match(lines(s.sk, LOST), [{ level: 40, reason: 'bucket_missing' }], `watch-${i}: one warn line naming the reason`)
      t.equal((await request(`${s.sk.adminUrl}/readyz`)).statusCode, 200, `watch-${i}: still ready (serving from the locks it has)`)
    }

    // What any `sidekey fleet` verb does first: open the bucket, creating it when missing; then a lock.
    const kv = await testBucket(t, broker.url)
    const lock = await issueCommand({ kv, key: operator.key, waitMs: 0, input: { action: 'lock', tool: 'api', instance: '*', actor: 'test', reason: 'stored after the bucket came back' } })
    await until(async () => (await Promise.all(fleet.map(async (s) => (await s.call()).status))).every((s) => s === 403), 'the lock applied on all three', 60_000)
    for (const [i, s] of fleet.entries()) {
      t.match(JSON.parse((await s.call()).body), { error: 'tool_locked', tool: 'api' }, `watch-${i}: the locked tool answers 403 tool_locked`)
      await until(async () => (await watchingGauge(s.sk)) === '1', `watch-${i} watching again`)
      t.match(await fleetStatus(s.sk), { connected: true, synced: true })
      t.equal(lines(s.sk, LOST).length, 1, `watch-${i}: the outage was logged once, however many retries it took`)
      t.match(lines(s.sk, BACK), [{ reason: 'bucket_missing', down_ms: Number }])
    }

    // The same signed lock stored again under its key after the watcher restarted: still a replay, refused.
    await kv.put(KEYS.command(lock.claims.jti), lock.jws)
    for (const [i, s] of fleet.entries()) {
      await until(() => s.sk.log.events('fleet.command').some((e) => e.jti === lock.claims.jti && e.result === 'rejected'), `watch-${i} refused the replay`)
      const events = s.sk.log.events('fleet.command').filter((e) => e.jti === lock.claims.jti)
      t.match(events, [{ result: 'applied' }, { result: 'rejected', error: 'replayed' }], `watch-${i}: applied exactly once, the replay refused`)
    }
  })

  t.test('the NATS connection closed for good (the broker refuses its token), then back', async (t) => {
    let token = 'first-token'
    const broker = await startNats(t, nats.path!, () => ['--auth', token])
    const tokenFile = join(stateDir, 'token')
    writeFileSync(tokenFile, 'first-token\n', { mode: 0o600 })
    const s = await sidecar(t, sidecarYaml('closed-0', up, operator, `{ servers: [${broker.url}], token_file: ${tokenFile} }`, stateDir), up.port)
    await s.sk.app.fleet!.synced()
    t.equal((await s.call()).status, 200)

    // Restarted with another token: the client's reconnect is refused twice and it closes the connection for good.
    await broker.stop()
    token = 'second-token'
    await broker.start()
    await until(() => s.sk.log.lines.some((l) => l.msg === 'fleet broker unavailable; serving from config and the cached state'), 'the connection closed for good', 20_000)
    t.match(await fleetStatus(s.sk), { connected: false, synced: false })
    t.equal(await watchingGauge(s.sk), '0')
    t.match(lines(s.sk, LOST), [{ level: 40, reason: 'disconnected' }], 'one warn line for the whole outage')

    // A lock stored meanwhile (by an operator holding the new token), then the broker takes the old token again.
    const nc = await connect({ servers: broker.url, token: 'second-token', name: 'test operator' })
    const bucket = await new Kvm(nc).open('sidekey')
    const lock = await issueCommand({ kv: bucket, key: operator.key, waitMs: 0, input: { action: 'lock', tool: 'api', instance: '*', actor: 'test', reason: 'stored while closed' } })
    await nc.close()
    await broker.stop()
    token = 'first-token'
    await broker.start()
    await until(async () => (await s.call()).status === 403, 'the lock stored while closed applied', 60_000)
    await until(async () => (await watchingGauge(s.sk)) === '1', 'watching again')
    t.match(await fleetStatus(s.sk), { connected: true, synced: true })
    t.equal(lines(s.sk, LOST).length, 1)
    t.equal(s.sk.log.events('fleet.command').filter((e) => e.jti === lock.claims.jti && e.result === 'applied').length, 1, 'applied once')
  })
})
