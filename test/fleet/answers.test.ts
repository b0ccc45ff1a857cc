import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { cli } from '../helpers/cli.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { operatorKey, testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { KEYS, type Ack } from '../../src/fleet/bucket.js'

/**
 * What `sidekey fleet` prints is what happened: with the real CLI (dist/cli.js) against three sidecars on a real
 * nats-server, a revoke a `file` issuer cannot carry out is answered `not_revocable`, a command signed by a key the
 * sidecars do not trust is answered `rejected`, and the CLI returns once every live instance answered, exit 1.
 * `--wait 10m` is longer than the CLI helper lets a child run (60 s): a CLI that waited it out fails the test.
 */
const nats = await natsBinary

t.test('fleet answers: not revocable, rejected; an operator config of fleet: alone', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const kv = await testBucket(t, broker.url)
  const operator = await operatorKey('ES256')
  const intruder = await operatorKey('ES256')
  const up = await startUpstream()
  t.teardown(() => up.close())
  const dir = t.testdir({ 'search-key': 'sk-mounted-secret-0001\n' })

  const yaml = (id: string): string => `
instance_id: ${id}
ca: { dir: {{CA_DIR}} }
resolve: { api.test: 127.0.0.1, search.test: 127.0.0.1 }
issuers: { local: { type: local_jwt }, mounted: { type: file, path: ${join(dir, 'search-key')} } }
tools:
  api: { match: { host: api.test, port: ${up.port} }, issuer: local, plaintext: true }
  search: { match: { host: search.test, port: ${up.port} }, issuer: mounted, plaintext: true }
fleet:
  nats: { servers: [${broker.url}] }
  operator_keys: ${operator.jwksFile}
  heartbeat: 1s
`
  const ids = ['agent-0', 'agent-1', 'agent-2']
  const fleet: RunningSidekey[] = []
  for (const id of ids) fleet.push(await startSidekey(t, yaml(id)))
  await Promise.all(fleet.map((sk) => sk.app.fleet!.synced()))
  for (const id of ids) await until(async () => (await kv.get(KEYS.heartbeat(id))) !== null, `${id}'s heartbeat`)
  // What an operator keeps on their machine: fleet: alone, as in config/examples/operator/fleet-operator.yaml.
  const operatorConfig = join(dir, 'operator.yaml')
  writeFileSync(operatorConfig, `fleet:\n  nats: { servers: [${broker.url}] }\n  operator_keys: ${operator.jwksFile}\n`)
  const fleetCli = (verb: string, args: string[], key = operator.pemFile): ReturnType<typeof cli> =>
    cli(['fleet', verb, '--config', operatorConfig, '--key', key, '--actor', 'oncall', '--wait', '10m', ...args])
  const call = async (sk: RunningSidekey, host: string): Promise<number> => {
    const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
    try {
      const res = await request(`http://${host}:${up.port}/x`, { dispatcher: agent })
      await res.body.dump()
      return res.statusCode
    } finally {
      await agent.close()
    }
  }
  const credentialId = async (sk: RunningSidekey, tool: string): Promise<unknown> => {
    const res = await request(`${sk.adminUrl}/status`)
    return ((await res.body.json()) as { tools: Record<string, { credential_id: unknown }> }).tools[tool]?.credential_id
  }

  t.test('an operator config with only fleet: works for lock, status and unlock', async (t) => {
    const lock = await fleetCli('lock', ['--tool', 'api', '--instance', 'agent-1', '--reason', 'operator config test'])
    t.equal(lock.code, 0, lock.stderr)
    t.match(lock.stdout, /^ok +agent-1 +applied/m)
    t.match(lock.stdout, /^1\/1 instances applied in \d+ ms$/m)
    t.equal(await call(fleet[1]!, 'api.test'), 403, 'agent-1 refuses the locked tool')
    // A lock shows in status once the instance's next heartbeat carries it: asked again until it does (bounded).
    let status = await cli(['fleet', 'status', '--config', operatorConfig])
    await until(async () => {
      status = await cli(['fleet', 'status', '--config', operatorConfig])
      return /locked api by oncall/.test(status.stdout)
    }, 'the lock in fleet status')
    t.equal(status.code, 0, status.stderr)
    t.match(status.stdout, /instances \(3 live of 3 seen\)/)
    t.match(status.stdout, /locked api by oncall at .*: operator config test/)
    const unlock = await fleetCli('unlock', ['--tool', 'api', '--instance', 'agent-1', '--reason', 'done'])
    t.equal(unlock.code, 0, unlock.stderr)
    t.equal(await call(fleet[1]!, 'api.test'), 200, 'agent-1 serves it again')
  })

  t.test('revoke on a file issuer: not_revocable with the reason, nothing claimed revoked, exit 1', async (t) => {
    const sk = fleet[0]!
    t.equal(await call(sk, 'search.test'), 200)
    const before = await credentialId(sk, 'search')
    t.type(before, 'string')
    const r = await fleetCli('revoke', ['--tool', 'search', '--instance', 'agent-0', '--reason', 'key in a CI log'])
    t.equal(r.code, 1, 'not applied: exit 1')
    t.match(r.stdout, /^FAIL agent-0 +not_revocable: file issuer: .*rotate the secret at its source/m)
    t.match(r.stdout, /^0\/1 instances applied in \d+ ms; 1 not revocable: file issuer: .*at its source$/m,
      'the summary counts the outcome and says why')
    t.notMatch(r.stderr, /no answer/, 'every live instance answered: the CLI did not wait out --wait')
    await sk.app.audit.settled()
    t.equal(await credentialId(sk, 'search'), before, 'the same credential is in use')
    t.same(sk.log.events('credential.revoked'), [], 'no credential.revoked: nothing was revoked')
    t.match(sk.log.events('fleet.command').at(-1),
      { action: 'revoke', tool: 'search', result: 'not_revocable', error: /^file issuer: / })
    const ack = (await kv.get(KEYS.ack(r.stdout.match(/jti ([0-9a-f]+)/)![1]!, 'agent-0')))!.json<Ack>()
    t.match(ack, { instance: 'agent-0', result: /^not_revocable: file issuer: / })
    const secret = 'sk-mounted-secret-0001'
    t.notOk(r.stdout.includes(secret) || sk.log.text.includes(secret), 'the secret is in no output')
  })

  t.test('a command signed by a key no sidecar trusts: every instance answers rejected, exit 1', async (t) => {
    const r = await fleetCli('lock', ['--tool', '*', '--reason', 'forged'], intruder.pemFile)
    t.equal(r.code, 1, 'rejected everywhere: exit 1')
    t.match(r.stderr, /--key \S+ is not among fleet\.operator_keys/, 'the CLI warns before publishing')
    for (const id of ids) t.match(r.stdout, new RegExp(`^FAIL ${id} +rejected: unknown_key`, 'm'))
    t.match(r.stdout, /^0\/3 instances applied in \d+ ms; 3 rejected: unknown_key$/m)
    t.notMatch(r.stderr, /no answer/)
    const jti = r.stdout.match(/jti ([0-9a-f]+)/)![1]!
    for (const [i, id] of ids.entries()) {
      const ack = (await kv.get(KEYS.ack(jti, id)))!.json<Ack>()
      t.same(Object.keys(ack).sort(), ['applied_at', 'instance', 'jti', 'result'],
        `${id}: the answer holds the outcome, nothing the command said`)
      t.match(ack, { instance: id, jti, result: 'rejected: unknown_key' })
      t.equal(await call(fleet[i]!, 'api.test'), 200, `${id}: nothing locked`)
    }
  })
})
