import t from 'tap'
import { generateKeyPairSync, createPrivateKey } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { request, ProxyAgent } from 'undici'
import { verifyCommand } from '../../src/reports/verify/command.js'
import { KEYS } from '../../src/fleet/bucket.js'
import { publicJwk, AUDIT_KEY_FILE, type AuditKey } from '../../src/audit/trail/key.js'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { freePort } from '../helpers/free-port.js'
import { operatorKey, testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { rechain } from './trail-generator.js'

/**
 * `sidekey audit verify --fleet CONFIG`: the checkpoint a real sidekey published in the fleet bucket of a real
 * nats-server is what vouches for its trail. A rewrite with a fresh key fails (the key did not sign the published
 * checkpoint); a rewrite with the stolen real key fails too (the chain does not reach the published head); a tail
 * cut before the published seq fails; an instance that published nothing is consistent, not authenticated.
 */
const nats = await natsBinary
t.test('--fleet checks each run against the checkpoint its instance published', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const operator = await operatorKey('EdDSA')
  const kv = await testBucket(t, broker.url)
  const up = await startUpstream()
  t.teardown(() => up.close())
  const yaml = `
instance_id: fleet-audit-1
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
`
  const sk = await startSidekey(t, yaml)
  await sk.app.fleet!.synced()
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  for (let i = 0; i < 30; i++) {
    const res = await request(`http://api.test:${up.port}/v1/items/${i}`, { dispatcher: agent })
    await res.body.dump()
  }
  await agent.close()
  const lastLocal = (): number => (sk.log.events('audit.checkpoint').at(-1) as { checkpoint: { seq: number } }).checkpoint.seq
  const publishedSeq = async (): Promise<number | undefined> => {
    const e = await kv.get(KEYS.checkpoint('fleet-audit-1')).catch(() => null)
    return e === null || e.length === 0 ? undefined : e.json<{ seq: number }>().seq
  }
  await until(async () => (await publishedSeq()) === lastLocal(), 'the last checkpoint in the bucket')
  await sk.app.close()
  const published = (await publishedSeq())!
  const lines = sk.log.text.split('\n').filter((l) => l !== '')
  t.ok(published > 20 && published < lines.length, `published seq ${published} of ${lines.length} lines`)
  const config = join(sk.caDir, 'auditor.yaml')
  writeFileSync(config, yaml.replaceAll('{{CA_DIR}}', sk.caDir))

  /** `sidekey audit verify ARGS -` in process, the trail on stdin. */
  const verifyArgs = async (args: readonly string[], trail: readonly string[]): Promise<{ code: number, stdout: string, stderr: string }> => {
    let stdout = ''
    let stderr = ''
    const sink = (f: (s: string) => void): NodeJS.WritableStream => new Writable({ write (c, _e, cb) { f(String(c)); cb() } })
    const code = await verifyCommand([...args, '-'], { stdin: Readable.from([Buffer.from(trail.join('\n') + '\n')]), stdout: sink((s) => { stdout += s }), stderr: sink((s) => { stderr += s }) })
    return { code, stdout, stderr }
  }
  const verify = (trail: readonly string[], ...args: string[]): ReturnType<typeof verifyArgs> => verifyArgs(['--fleet', config, ...args], trail)

  t.test('the untouched trail is intact: its key signed the published checkpoint, its chain reaches it', async (t) => {
    const r = await verify(lines, '--json')
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.match(JSON.parse(r.stdout), { intact: true, trust: 'fleet', run_details: [{ trust: 'fleet', instance_id: 'fleet-audit-1' }] })
  })

  const started = lines.findIndex((l) => l.includes('"event":"audit.started"'))
  const realKey = JSON.stringify(JSON.parse(lines[started]!).key)
  const call = lines.findIndex((l) => l.includes('"event":"credential.used"'))

  t.test('the full rewrite with a fresh key: its key did not sign the published checkpoint', async (t) => {
    const pair = generateKeyPairSync('ed25519')
    const fresh: AuditKey = { privateKey: pair.privateKey, publicJwk: publicJwk(pair.publicKey) }
    const forged = rechain(lines.filter((_, i) => i !== call), 0, (l) => l.replace(realKey, JSON.stringify(fresh.publicJwk)), fresh)
    const r = await verify(forged)
    t.equal(r.code, 1, r.stdout)
    t.match(r.stdout, /seq 1: key: instance fleet-audit-1: its audit key .* did not sign the checkpoint the instance published in the fleet bucket/)
  })

  t.test('rewritten with the stolen real key: the chain no longer reaches the published head', async (t) => {
    const stolen = createPrivateKey(readFileSync(join(sk.caDir, AUDIT_KEY_FILE)))
    const key: AuditKey = { privateKey: stolen, publicJwk: JSON.parse(realKey) }
    const forged = rechain(lines, call, (l) => l.replace('"status":200', '"status":201'), key)
    const r = await verify(forged)
    t.equal(r.code, 1, r.stdout)
    t.match(r.stdout, new RegExp(`seq ${published}: rewritten: the checkpoint its instance published off the node \\(fleet bucket\\) has another chain`))
  })

  t.test('the tail cut before the published seq', async (t) => {
    const cut = lines.slice(0, published - 3)
    const r = await verify(cut)
    t.equal(r.code, 1, r.stdout)
    t.match(r.stdout, new RegExp(`seq ${published - 2}: tail: the fleet bucket holds this run's checkpoint of seq ${published}, but the input ends at seq ${published - 3}: its tail was cut`))
    // Still being written (--live): not yet arrived, said so.
    const live = await verify(cut, '--live')
    t.equal(live.code, 0, live.stdout)
    t.match(live.stdout, new RegExp(`checkpointed in the fleet bucket to seq ${published}; the input ends at seq ${published - 3} \\(--live`))
  })

  t.test('an instance that published no checkpoint: consistent, not authenticated (exit 3)', async (t) => {
    await kv.delete(KEYS.checkpoint('fleet-audit-1'))
    const none = await verify(lines)
    t.equal(none.code, 3, none.stdout)
    t.match(none.stdout, /consistent, not authenticated: pass --keys, --fleet or --from/)
    t.match(none.stdout, /run \S+ \(instance fleet-audit-1\): not authenticated: .* published no checkpoint in the fleet bucket/)
  })

  t.test('a broker that cannot be reached, or a config without fleet:, is exit 2', async (t) => {
    const noFleet = join(sk.caDir, 'nofleet.yaml')
    writeFileSync(noFleet, 'instance_id: x\nissuers: { local: { type: local_jwt } }\ntools: {}\n')
    const down = join(sk.caDir, 'down.yaml')
    writeFileSync(down, yaml.replaceAll('{{CA_DIR}}', sk.caDir).replace(broker.url, `nats://127.0.0.1:${await freePort()}`))
    for (const [file, why] of [[noFleet, /has no fleet: section/], [down, /cannot reach the fleet broker/]] as const) {
      const r = await verifyArgs(['--fleet', file], lines)
      t.equal(r.code, 2)
      t.match(r.stderr, why)
    }
  })
})
