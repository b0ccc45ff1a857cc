// The docker-compose example, parsed (no engine runs in CI): the agent shares sidekey's network namespace,
// trusts the CA bundle from a read-only volume, and never mounts the CA key or the config.
import { posix } from 'node:path'
import t from 'tap'
import { loadConfigFile } from '../../src/config/load.js'
import { loadOperatorKeys } from '../../src/fleet/keys.js'
import { flagValue, privateKeysIn, repoPath, yamlDocs } from './helpers.js'
import type { Obj } from './helpers.js'

const FILE = 'deploy/compose/docker-compose.yaml'
// Compose resolves YAML 1.1 merge keys (`<<`), which the example uses for the shared hardening options.
const compose = yamlDocs(FILE, { merge: true })[0] as Obj
const services = compose.services as Obj
const { sidekey, agent } = services as { sidekey: Obj, agent: Obj }
const caStep = services['sidekey-ca'] as Obj

/** `source:target[:ro]` short syntax, split. */
const volumes = (svc: Obj): Array<{ source: string, target: string, readOnly: boolean }> =>
  (svc.volumes as string[] ?? []).map((v) => {
    const [source = '', target = '', mode] = v.split(':')
    return { source, target, readOnly: mode === 'ro' }
  })
const holding = (svc: Obj, file: string): { source: string, target: string, readOnly: boolean } | undefined =>
  volumes(svc).find((v) => file === v.target || file.startsWith(`${v.target}/`))
const argAfter = (svc: Obj, flag: string): string | undefined => flagValue(svc.command as string[], flag)
const configFile = (svc: Obj): string => {
  const target = argAfter(svc, '--config') as string
  const source = volumes(svc).find((v) => v.target === target)?.source as string
  return repoPath(posix.join(posix.dirname(FILE), source))
}

t.test('the agent shares sidekey\'s network namespace and starts once sidekey is healthy', async (t) => {
  t.equal(agent.network_mode, 'service:sidekey')
  t.equal(agent.depends_on?.sidekey?.condition, 'service_healthy')
  t.ok(sidekey.healthcheck?.test?.join(' ').includes('/healthz'), 'sidekey has a healthcheck on /healthz')
  t.equal(sidekey.depends_on?.['sidekey-ca']?.condition, 'service_completed_successfully', 'the CA exists before sidekey starts')
  t.notOk(sidekey.ports, 'no port is published: the proxy is for the agent in the shared namespace only')
})

t.test('sidekey runs the mounted config, which is valid and listens on loopback', async (t) => {
  t.same(sidekey.command.slice(0, 1), ['run'])
  t.equal(holding(sidekey, argAfter(sidekey, '--config') ?? '')?.readOnly, true, 'config mounted read-only')
  const cfg = await loadConfigFile(configFile(sidekey), {})
  t.match(cfg.listen, /^127\.0\.0\.1:/)
  t.equal(configFile(caStep), configFile(sidekey), 'the CA step reads the same config')
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) t.equal(agent.environment[name], `http://${cfg.listen}`, name)
  t.equal(agent.environment.OPENAI_API_KEY, 'sidekey', 'placeholders only')

  // The CA key stays with sidekey; the agent gets the bundle, read-only.
  const key = holding(sidekey, cfg.ca.dir)
  if (key === undefined) return t.fail('ca.dir is not on a volume')
  t.equal(holding(caStep, cfg.ca.dir)?.source, key.source, 'the CA step creates the CA in sidekey\'s volume')
  t.notOk(volumes(agent).some((v) => v.source === key.source), 'the agent does not mount the CA key volume')
  const bundle = argAfter(caStep, '--bundle') as string
  for (const name of ['NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE']) {
    t.equal(agent.environment[name], bundle, `${name} is the bundle`)
  }
  const shared = holding(agent, bundle)
  t.equal(shared?.readOnly, true, 'the agent mounts the bundle read-only')
  t.equal(holding(caStep, bundle)?.source, shared?.source, 'from the volume the CA step writes')
  t.same(volumes(agent).map((v) => v.source), [shared?.source], 'and mounts nothing else')
})

t.test('containers run as non-root with a read-only root filesystem', async (t) => {
  for (const [name, svc] of Object.entries(services) as Array<[string, Obj]>) {
    t.match(svc.user, /^[1-9]\d*:\d+$/, `${name}: numeric non-root user`)
    t.equal(svc.read_only, true, `${name}: read_only`)
    t.same(svc.cap_drop, ['ALL'], `${name}: cap_drop ALL`)
    t.ok((svc.security_opt as string[]).includes('no-new-privileges:true'), `${name}: no-new-privileges`)
  }
  t.not(agent.user, sidekey.user, 'the agent is another user than sidekey')
  t.equal(sidekey.build?.context, '../..', 'builds the repository\'s Dockerfile')
})

// The optional fleet override (deploy/compose/fleet.yaml): a NATS JetStream broker on an internal network and the
// base config plus `fleet:`, mounted in place of the base config. The base file alone is unchanged.
t.test('the fleet override: JetStream on an internal network, a valid fleet config, public operator keys only', async (t) => {
  const FLEET = 'deploy/compose/fleet.yaml'
  const override = yamlDocs(FLEET)[0] as Obj
  const { nats, sidekey: fleetSidekey } = override.services as { nats: Obj, sidekey: Obj }
  t.equal(nats.image, 'nats:2.10-alpine')
  t.match(nats.command.join(' '), /nats-server -js -sd \/data /, 'JetStream with its store on the volume')
  t.ok(volumes(nats).some((v) => v.target === '/data' && !v.source.startsWith('.')), 'a named volume for the store')
  t.notOk(nats.ports, 'no port published')
  t.same(nats.networks, ['fleet'])
  t.equal(override.networks.fleet.internal, true, 'the fleet network has no route out')
  t.equal(nats.read_only, true)
  t.same(nats.cap_drop, ['ALL'])

  // Same mount target as the base: compose replaces the base config with the fleet one, for the CA step too.
  const target = argAfter(sidekey, '--config') as string
  const fleetConfig = volumes(fleetSidekey).find((v) => v.target === target)
  t.equal(fleetConfig?.readOnly, true, 'config mounted read-only')
  t.same(volumes(override.services['sidekey-ca'] as Obj).find((v) => v.target === target), fleetConfig, 'the CA step reads the same config')
  const cfg = await loadConfigFile(repoPath(posix.join(posix.dirname(FLEET), fleetConfig!.source)), {})
  const { fleet, ...rest } = cfg
  t.same(rest, await loadConfigFile(configFile(sidekey), {}), 'the base config apart from fleet:')
  if (fleet === undefined) return t.fail('no fleet section')
  t.same(fleet.nats.servers, ['nats://nats:4222'])
  t.equal(fleet.nats.token_file, `/run/secrets/${(fleetSidekey.secrets as string[])[0]}`, 'the token is a compose secret')
  t.same(nats.secrets, fleetSidekey.secrets, 'the broker reads the same secret')
  const keys = volumes(fleetSidekey).find((v) => v.target === fleet.operator_keys)
  t.equal(keys?.readOnly, true, 'operator keys mounted read-only')
  const keysFile = posix.join(posix.dirname(FLEET), keys!.source)
  t.same(privateKeysIn(keysFile), [], 'the sample JWKS holds public keys only')
  t.equal((await loadOperatorKeys(repoPath(keysFile))).size, 1, 'and sidekey accepts it')
  t.ok(holding(sidekey, fleet.state_file ?? ''), 'the lock cache is on sidekey\'s writable volume')
  t.notOk(override.services.agent, 'the agent gets nothing new')
})
