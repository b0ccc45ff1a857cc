import t, { type Test } from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { operatorKey, testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { issueCommand, type IssueResult } from '../../src/fleet/operator.js'
import { KEYS } from '../../src/fleet/bucket.js'
import { WATCH_LOG } from '../../src/fleet/watch.js'

/**
 * The command watcher cannot die quietly: with the bucket's stream deleted under a connected fleet, or the NATS
 * connection closed for good, each sidecar logs the outage once, reports `synced: false` and
 * `sidekey_fleet_watching 0`, retries, and when the bucket answers again applies what was stored meanwhile, once.
 */
interface Sidecar {
  readonly sk: RunningSidekey
  call (): Promise<{ status: number, body: string }>
  status (): Promise<{ connected: boolean, synced: boolean }>
  /** The sidekey_fleet_watching sample, as text. */
  gauge (): Promise<string | undefined>
  /** Log lines with this message. */
  lines (msg: string): Array<Record<string, unknown>>
  /** The `fleet.command` audit events of one command. */
  events (jti: string): Array<Record<string, unknown>>
}

const WARN = 40
const all = async <T>(fleet: readonly Sidecar[], f: (s: Sidecar) => Promise<T>): Promise<T[]> =>
  await Promise.all(fleet.map(f))

const nats = await natsBinary
t.test('the command watcher is supervised', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const operator = await operatorKey('ES256')
  const up = await startUpstream()
  t.teardown(() => up.close())
  const stateDir = mkdtempSync(join(tmpdir(), 'sidekey-fleet-watch-'))

  const sidecar = async (t: Test, id: string, nats: string): Promise<Sidecar> => {
    const sk = await startSidekey(t, `
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
`)
    const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
    t.teardown(() => agent.close())
    return {
      sk,
      async call () {
        const res = await request(`http://api.test:${up.port}/v1/x`, { dispatcher: agent })
        return { status: res.statusCode, body: await res.body.text() }
      },
      async status () {
        const res = await request(`${sk.adminUrl}/status`)
        return (await res.body.json() as { fleet: Awaited<ReturnType<Sidecar['status']>> }).fleet
      },
      async gauge () {
        return /^sidekey_fleet_watching (\d)$/m.exec(await (await request(`${sk.adminUrl}/metrics`)).body.text())?.[1]
      },
      lines: (msg) => sk.log.lines.filter((l) => l.msg === msg),
      events: (jti) => sk.log.events('fleet.command').filter((e) => e.jti === jti),
    }
  }
  const lock = (kv: KV, reason: string, tool = 'api'): Promise<IssueResult> =>
    issueCommand({
      kv, key: operator.key, waitMs: 0, input: { action: 'lock', tool, instance: '*', actor: 'op', reason },
    })

  t.test('the bucket stream deleted under 3 connected sidecars, then recreated by the operator CLI', async (t) => {
    const broker = await startNats(t, nats.path!)
    const nc = await connect({ servers: broker.url, name: 'test admin' })
    t.teardown(() => nc.close())
    const jsm = await jetstreamManager(nc)
    const fleet = await Promise.all([0, 1, 2].map((i) => sidecar(t, `watch-${i}`, `{ servers: [${broker.url}] }`)))
    await Promise.all(fleet.map((s) => s.sk.app.fleet!.synced()))
    t.same(await all(fleet, async (s) => (await s.call()).status), [200, 200, 200])
    t.same(await all(fleet, (s) => s.gauge()), ['1', '1', '1'], 'watching once the bucket was read')

    const deletedAt = performance.now()
    await jsm.streams.delete('KV_sidekey')
    await until(async () => (await all(fleet, (s) => s.status())).every((f) => !f.synced), 'synced: false', 20_000)
    t.comment(`stream deleted: all 3 report synced: false after ${Math.round(performance.now() - deletedAt)} ms`)
    for (const [i, s] of fleet.entries()) {
      t.match(await s.status(), { connected: true, synced: false }, `watch-${i}: connected, and says it is not synced`)
      t.equal(await s.gauge(), '0', `watch-${i}: sidekey_fleet_watching 0`)
      t.match(s.lines(WATCH_LOG.lost), [{ level: WARN, reason: 'bucket_missing' }], `watch-${i}: one warning, with why`)
      t.equal((await request(`${s.sk.adminUrl}/readyz`)).statusCode, 200, `watch-${i}: still ready, serving`)
    }

    // What any `sidekey fleet` verb does first: open the bucket, creating it when missing; then a lock.
    const recreatedAt = performance.now()
    const kv = await testBucket(t, broker.url)
    const locked = await lock(kv, 'stored after the bucket came back')
    const refused = async (): Promise<boolean> =>
      (await all(fleet, async (s) => (await s.call()).status)).every((c) => c === 403)
    await until(refused, 'the lock applied on all three', 60_000)
    t.comment(`bucket recreated and locked: applied on all 3 after ${Math.round(performance.now() - recreatedAt)} ms`)
    for (const [i, s] of fleet.entries()) {
      t.match(JSON.parse((await s.call()).body), { error: 'tool_locked', tool: 'api' }, `watch-${i}: 403 tool_locked`)
      await until(async () => (await s.gauge()) === '1', `watch-${i} watching again`)
      t.match(await s.status(), { connected: true, synced: true })
      t.equal(s.lines(WATCH_LOG.lost).length, 1, `watch-${i}: the outage was logged once, however many retries it took`)
      t.match(s.lines(WATCH_LOG.back), [{ reason: 'bucket_missing', down_ms: Number }])
    }

    // The same signed lock stored again under its key after the watcher restarted: still a replay, refused.
    await kv.put(KEYS.command(locked.claims.jti), locked.jws)
    for (const [i, s] of fleet.entries()) {
      const rejected = (): boolean => s.events(locked.claims.jti).some((e) => e.result === 'rejected')
      await until(rejected, `watch-${i} refusing the replay`)
      t.same(s.events(locked.claims.jti).map((e) => e.error ?? e.result), ['applied', 'replayed'],
        `watch-${i}: applied exactly once, the replay refused`)
    }
  })

  t.test('the NATS connection closed for good (the broker refuses its token), then back', async (t) => {
    let token = 'first-token'
    const broker = await startNats(t, nats.path!, () => ['--auth', token])
    const tokenFile = join(stateDir, 'token')
    writeFileSync(tokenFile, 'first-token\n', { mode: 0o600 })
    const s = await sidecar(t, 'closed-0', `{ servers: [${broker.url}], token_file: ${tokenFile} }`)
    await s.sk.app.fleet!.synced()
    t.equal((await s.call()).status, 200)

    // Restarted with another token: the client's reconnect is refused twice and it closes the connection for good.
    await broker.stop()
    token = 'second-token'
    await broker.start()
    const unavailable = 'fleet broker unavailable; serving from config and the cached state'
    await until(() => s.lines(unavailable).length > 0, 'the connection closed for good', 20_000)
    t.match(await s.status(), { connected: false, synced: false })
    t.equal(await s.gauge(), '0')
    t.match(s.lines(WATCH_LOG.lost), [{ level: WARN, reason: 'disconnected' }], 'one warning for the whole outage')

    // A lock stored meanwhile (by an operator holding the new token), then the broker takes the old token again.
    const nc = await connect({ servers: broker.url, token: 'second-token', name: 'test operator' })
    const locked = await lock(await new Kvm(nc).open('sidekey'), 'stored while closed')
    await nc.close()
    await broker.stop()
    token = 'first-token'
    await broker.start()
    await until(async () => (await s.call()).status === 403, 'the lock stored while closed applied', 60_000)
    await until(async () => (await s.gauge()) === '1', 'watching again')
    t.match(await s.status(), { connected: true, synced: true })
    t.equal(s.lines(WATCH_LOG.lost).length, 1)
    t.same(s.events(locked.claims.jti).map((e) => e.result), ['applied'], 'applied once')
  })

  t.test('a bucket whose last command entry is a delete marker (`nats kv del`) is read to the end', async (t) => {
    const broker = await startNats(t, nats.path!)
    const kv = await testBucket(t, broker.url)
    await lock(kv, 'in force')
    await kv.delete(KEYS.command((await lock(kv, 'deleted by hand', 'other')).claims.jti))
    const s = await sidecar(t, 'deleted-0', `{ servers: [${broker.url}] }`)
    await until(async () => (await request(`${s.sk.adminUrl}/readyz`)).statusCode === 200, 'required: true ready')
    t.equal((await s.call()).status, 403, 'the lock before the delete marker applied')
    t.equal(await s.gauge(), '1')
  })

  t.test('the stream deleted and created again at once: numbered from 1 again, its lock not skipped', async (t) => {
    const broker = await startNats(t, nats.path!)
    const kv = await testBucket(t, broker.url)
    const s = await sidecar(t, 'replaced-0', `{ servers: [${broker.url}] }`)
    await s.sk.app.fleet!.synced()
    // Revisions climb in the old stream: the sidecar has handled commands well past the new stream's first ones.
    for (let k = 0; k < 5; k++) await lock(kv, `old ${k}`, 'other')
    await until(() => s.sk.log.events('fleet.command').length >= 5, 'the old commands applied')
    await kv.destroy()
    const locked = await lock(await testBucket(t, broker.url), 'in the new bucket')
    t.ok(locked.claims.jti, 'stored in the new stream')
    await until(async () => (await s.call()).status === 403, 'the lock in the replaced bucket applied', 60_000)
    t.match(s.lines(WATCH_LOG.lost), [{ reason: /^bucket_(missing|replaced)$/ }])
    await until(async () => (await s.gauge()) === '1', 'watching again')
  })
})
