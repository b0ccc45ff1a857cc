import t from 'tap'
import { request, ProxyAgent } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { operatorKey, testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { KEYS } from '../../src/fleet/bucket.js'
import { verifyCheckpoint } from '../../src/audit/trail/key.js'

/**
 * Audit checkpoints published to the fleet bucket (`checkpoint.<instance>`, the latest): what an auditor compares a
 * log against when its tail may have been cut. Real nats-server; the broker is stopped mid-run to show the audit
 * path neither waits nor fails, and that the newest checkpoint arrives once it is back.
 */
const nats = await natsBinary
t.test('signed audit checkpoints reach the bucket and verify with GET /audit-key', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const operator = await operatorKey('EdDSA')
  const kv = await testBucket(t, broker.url)
  const up = await startUpstream()
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: cp.agent/1
ca: { dir: {{CA_DIR}} }
resolve: { api.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.test, port: ${up.port} }, issuer: local, plaintext: true }
audit: { checkpoint_every: { events: 5 } }
fleet:
  nats: { servers: [${broker.url}] }
  operator_keys: ${operator.jwksFile}
  heartbeat: 200ms
`)
  await sk.app.fleet!.synced()
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => agent.close())
  const traffic = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const res = await request(`http://api.test:${up.port}/v1/x`, { dispatcher: agent })
      t.equal(res.statusCode, 200)
      await res.body.dump()
    }
  }
  const jwk = ((await (await request(`${sk.adminUrl}/audit-key`)).body.json()) as { keys: Array<Record<string, unknown>> }).keys[0]!
  const key = KEYS.checkpoint('cp.agent/1')
  t.equal(key, 'checkpoint.cp=2Eagent=2F1', 'one key token per instance id')
  const lastLocal = (): { seq: number, chain: string } => (sk.log.events('audit.checkpoint').at(-1) as { checkpoint: { seq: number, chain: string } }).checkpoint
  const published = async (): Promise<Record<string, unknown> | undefined> => {
    // The test's own connection may still be reconnecting after the broker restart: ask again.
    const e = await kv.get(key).catch(() => null)
    return e === null || e.length === 0 ? undefined : e.json<Record<string, unknown>>()
  }
  const matchesLocal = async (): Promise<boolean> => (await published())?.seq === lastLocal().seq

  t.test('after traffic, the bucket holds the local trail\'s last checkpoint, signed by the instance\'s audit key', async (t) => {
    await traffic(20)
    await until(matchesLocal, 'the last checkpoint in the bucket')
    const cp = (await published())!
    const check = verifyCheckpoint(cp.jws as string, jwk)
    t.ok(check.ok, 'the JWS verifies with GET /audit-key')
    if (!check.ok) return
    t.match(check.claims, { iss: 'cp.agent/1', seq: lastLocal().seq, chain: lastLocal().chain, final: false })
    t.match(cp, { instance: 'cp.agent/1', seq: check.claims.seq, chain: check.claims.chain, run_id: check.claims.run_id })
    t.equal(check.claims.run_id, sk.log.events('audit.started')[0]!.run_id)
  })

  t.test('broker down: requests and local checkpoints go on; the newest checkpoint is published once it is back', async (t) => {
    await broker.stop()
    await until(() => !sk.app.fleet!.connected, 'the sidecar to notice the broker is gone')
    const before = lastLocal().seq
    await traffic(20)
    t.ok(lastLocal().seq > before, 'checkpoints written locally while the broker is down')
    await broker.start()
    await until(matchesLocal, 'the newest checkpoint after the broker is back', 20_000)
    const cp = (await published())!
    const check = verifyCheckpoint(cp.jws as string, jwk)
    t.ok(check.ok && check.claims.chain === lastLocal().chain, 'the published checkpoint is the local trail\'s newest')
  })
})
