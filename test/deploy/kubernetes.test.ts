// The Kubernetes manifests, parsed and checked for the wiring a platform engineer relies on: sidekey runs as a
// native sidecar, the agent is pointed at it and trusts its CA, the CA key and every other secret stay in the
// sidekey container, probes reach the admin port, every container is locked down, and the embedded config is
// one sidekey accepts.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join, posix, relative } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { loadConfigFile } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { loadOperatorKeys } from '../../src/fleet/keys.js'
import { flagValue, privateKeysIn, repoPath, yamlDocs } from './helpers.js'
import type { Obj } from './helpers.js'

const DIR = 'deploy/kubernetes'
const files = readdirSync(repoPath(DIR)).filter((f) => f.endsWith('.yaml')).sort()
const docsByFile = new Map(files.map((f) => [f, yamlDocs(`${DIR}/${f}`) as Obj[]]))
const all = [...docsByFile.values()].flat()
const find = (kind: string): Obj => {
  const found = all.filter((d) => d.kind === kind)
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`)
  return found[0] as Obj
}

const deployment = find('Deployment')
const pod: Obj = deployment.spec.template.spec
const init: Obj[] = pod.initContainers ?? []
const main: Obj[] = pod.containers ?? []
const containers = [...init, ...main]
const sidecar = init.find((c) => c.name === 'sidekey') as Obj
const caInit = init.find((c) => c.name === 'sidekey-ca') as Obj
const agent = main.find((c) => c.name === 'agent') as Obj
const sidekeyContainers = [caInit, sidecar]
const volume = (name: string): Obj | undefined => (pod.volumes as Obj[]).find((v) => v.name === name)
const mounts = (c: Obj): Obj[] => c.volumeMounts ?? []
const env = (c: Obj, name: string): Obj | undefined => (c.env as Obj[] | undefined)?.find((e) => e.name === name)
const envValue = (c: Obj, name: string): string | undefined => env(c, name)?.value

/** The container's mount whose mountPath holds `file`, and the volume behind it. */
function mountOf (c: Obj, file: string): { mount: Obj, volume: Obj } | undefined {
  const mount = mounts(c).filter((m) => file === m.mountPath || file.startsWith(`${m.mountPath as string}/`))
    .sort((a, b) => (b.mountPath as string).length - (a.mountPath as string).length)[0]
  if (mount === undefined) return undefined
  const v = volume(mount.name)
  return v === undefined ? undefined : { mount, volume: v }
}
const argAfter = (c: Obj, flag: string): string | undefined => flagValue(c.args as string[], flag)

// The config the pod runs, written out and loaded the way sidekey loads it.
async function podConfig (t: Test): Promise<Readonly<Config>> {
  const cm = find('ConfigMap')
  const dir = t.testdir({})
  const file = join(dir, 'sidekey.yaml')
  writeFileSync(file, cm.data['sidekey.yaml'])
  return loadConfigFile(file, { SIDEKEY_INSTANCE_ID: 'agent-7d9f8-abcde' })
}

t.test('every manifest parses and names its kind', async (t) => {
  t.ok(files.length >= 6, files.join(', '))
  for (const [file, docs] of docsByFile) {
    t.ok(docs.length > 0, `${file} has a document`)
    for (const doc of docs) {
      t.type(doc.apiVersion, 'string', `${file}: apiVersion`)
      t.type(doc.kind, 'string', `${file}: kind`)
      if (doc.kind !== 'Kustomization') t.type(doc.metadata?.name, 'string', `${file}: metadata.name`)
    }
  }
  const kustomization = find('Kustomization')
  for (const res of kustomization.resources as string[]) t.ok(existsSync(repoPath(`${DIR}/${res}`)), `kustomization resource ${res} exists`)
  // Everything but the PodMonitor (which needs the Prometheus Operator's CRD) is applied by `kubectl apply -k`.
  const unlisted = files.filter((f) => f !== 'kustomization.yaml' && !(kustomization.resources as string[]).includes(f))
  t.same(unlisted, ['podmonitor.yaml'])
  t.ok((kustomization.images as Obj[]).some((i) => i.name === 'sidekey'), 'the sidekey image is set in one place')
})

t.test('sidekey is a native sidecar: an init container with restartPolicy Always, after the CA step', async (t) => {
  t.ok(sidecar, 'an init container named sidekey')
  t.equal(sidecar.restartPolicy, 'Always')
  t.notOk(main.some((c) => c.image === 'sidekey'), 'not a regular container (it would race the agent at start)')
  t.ok(caInit, 'an init container named sidekey-ca')
  t.equal(caInit.restartPolicy, undefined, 'the CA step runs to completion once')
  t.ok(init.indexOf(caInit) < init.indexOf(sidecar), 'the CA step runs before the sidecar starts')
  t.equal(caInit.args[0], 'ca')
  t.equal(sidecar.args[0], 'run')
  t.ok(sidecar.startupProbe, 'a startupProbe: the agent starts only once it passes')
})

t.test('the agent is pointed at the proxy and trusts the CA bundle from the shared read-only volume', async (t) => {
  const cfg = await podConfig(t)
  const proxyUrl = `http://${cfg.listen}`
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) t.equal(envValue(agent, name), proxyUrl, `${name}=${proxyUrl}`)
  t.match(cfg.listen, /^127\.0\.0\.1:\d+$/, 'the proxy listens on loopback: only this pod can use it')
  const noProxy = envValue(agent, 'NO_PROXY') ?? ''
  t.match(noProxy, /127\.0\.0\.1/)
  t.notOk(noProxy.split(',').some((h) => h === '*'), 'NO_PROXY does not switch the proxy off')

  const bundle = argAfter(caInit, '--bundle')
  if (bundle === undefined) return t.fail('sidekey-ca writes no --bundle')
  for (const name of ['NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE']) {
    const file = envValue(agent, name)
    t.equal(file, bundle, `${name} is the bundle sidekey-ca writes`)
    const agentSide = mountOf(agent, file ?? '')
    t.equal(agentSide?.mount.readOnly, true, `${name}: the agent mounts it read-only`)
    t.same(agentSide?.volume.emptyDir !== undefined, true, 'on a pod-local emptyDir')
    t.equal(mountOf(caInit, bundle)?.volume.name, agentSide?.volume.name, 'the same volume sidekey-ca writes to')
  }
  t.equal(envValue(agent, 'OPENAI_API_KEY'), 'sidekey', 'the agent holds placeholders only')
})

t.test('the CA key and every secret are mounted only into the sidekey containers', async (t) => {
  const cfg = await podConfig(t)
  const keyVolume = mountOf(sidecar, cfg.ca.dir)?.volume
  if (keyVolume === undefined) return t.fail(`no volume at ca.dir ${cfg.ca.dir}`)
  t.equal(keyVolume.emptyDir?.medium, 'Memory', 'the key never touches the node disk and dies with the pod')
  t.equal(mountOf(caInit, cfg.ca.dir)?.volume.name, keyVolume.name, 'sidekey-ca creates the CA in the same volume the sidecar loads it from')
  for (const c of main) t.notOk(mounts(c).some((m) => m.name === keyVolume.name), `${c.name as string} does not mount the key volume`)

  // The agent mounts the CA bundle and nothing else: no config, token, admin token or tool secret.
  t.same(mounts(agent).map((m) => m.name), [mountOf(agent, envValue(agent, 'SSL_CERT_FILE') ?? '')?.volume.name])
  const secretish = (pod.volumes as Obj[]).filter((v) => v.secret !== undefined || v.projected !== undefined)
  t.ok(secretish.length >= 2, 'admin token and projected token volumes exist')
  for (const v of secretish) {
    const users = containers.filter((c) => mounts(c).some((m) => m.name === v.name)).map((c) => c.name as string)
    t.same(users, ['sidekey'], `${v.name as string} is mounted by the sidekey sidecar only`)
  }
  t.equal(pod.automountServiceAccountToken, false, 'no Kubernetes API token in the pod')
  t.not(pod.shareProcessNamespace, true, 'no shared PID namespace (the agent could read sidekey\'s memory)')

  const tokenFile = cfg.admin.token_file
  if (tokenFile === undefined) return t.fail('the admin listens beyond loopback, so POSTs need a token')
  t.ok(mountOf(sidecar, tokenFile)?.volume.secret, 'admin.token_file comes from a Secret mounted into sidekey')
})

t.test('a projected service-account token with an audience, for token exchange', async (t) => {
  const projected = (pod.volumes as Obj[]).flatMap((v) => (v.projected?.sources as Obj[] | undefined ?? [])
    .filter((s) => s.serviceAccountToken !== undefined).map((s) => ({ volume: v, token: s.serviceAccountToken as Obj })))
  t.equal(projected.length, 1)
  const { volume: v, token } = projected[0] as { volume: Obj, token: Obj }
  t.type(token.audience, 'string')
  t.ok((token.audience as string).length > 0, 'bound to an audience, not usable against the API server')
  t.ok(token.expirationSeconds >= 600 && token.expirationSeconds <= 86400, 'a bounded lifetime the kubelet rotates')
  const mount = mounts(sidecar).find((m) => m.name === v.name) as Obj
  const path = posix.join(mount.mountPath, token.path)
  // The token-exchange example reads exactly this file.
  const example = await loadConfigFile(repoPath('config/examples/token-exchange.yaml'), { SIDEKEY_INSTANCE_ID: 'x' })
  const files = Object.values(example.issuers).flatMap((i) => i.type === 'oauth2_token_exchange' ? [i.subject_token_file] : [])
  t.ok(files.length > 0 && files.every((f) => f === path), `config/examples/token-exchange.yaml reads ${path}`)
})

t.test('probes hit the admin port: startup and liveness on /healthz, readiness on /readyz', async (t) => {
  const cfg = await podConfig(t)
  const adminPort = Number(cfg.admin.listen.slice(cfg.admin.listen.lastIndexOf(':') + 1))
  const named = (sidecar.ports as Obj[]).find((p) => p.name === 'admin')
  t.equal(named?.containerPort, adminPort, 'the admin containerPort is the configured admin port')
  t.notOk((sidecar.ports as Obj[]).some((p) => String(cfg.listen).endsWith(`:${p.containerPort as number}`)), 'the proxy port is not published')
  t.match(cfg.admin.listen, /^(0\.0\.0\.0|\[::\]):/, 'admin on the pod IP: the kubelet probes from outside the pod')
  const expect: Record<string, string> = { startupProbe: '/healthz', livenessProbe: '/healthz', readinessProbe: '/readyz' }
  for (const [probe, path] of Object.entries(expect)) {
    const get = sidecar[probe]?.httpGet as Obj | undefined
    t.equal(get?.path, path, `${probe} GET ${path}`)
    t.ok(get?.port === 'admin' || get?.port === adminPort, `${probe} on the admin port`)
  }
})

t.test('every container runs locked down', async (t) => {
  t.equal(pod.securityContext?.runAsNonRoot, true, 'pod: runAsNonRoot')
  for (const c of containers) {
    const sc = c.securityContext as Obj
    const name = c.name as string
    t.equal(sc.runAsNonRoot, true, `${name}: runAsNonRoot`)
    t.ok(Number.isInteger(sc.runAsUser) && sc.runAsUser > 0, `${name}: numeric non-root runAsUser`)
    t.equal(sc.allowPrivilegeEscalation, false, `${name}: no privilege escalation`)
    t.equal(sc.readOnlyRootFilesystem, true, `${name}: read-only root filesystem`)
    t.same(sc.capabilities?.drop, ['ALL'], `${name}: all capabilities dropped`)
    t.notOk(sc.capabilities?.add, `${name}: none added`)
    t.equal((sc.seccompProfile ?? pod.securityContext?.seccompProfile)?.type, 'RuntimeDefault', `${name}: seccomp RuntimeDefault`)
    t.ok(c.resources?.limits?.memory, `${name}: a memory limit`)
  }
  for (const c of sidekeyContainers) t.equal(c.securityContext.runAsUser, 10001, `${c.name as string} runs as the image's user`)
  t.not(agent.securityContext.runAsUser, sidecar.securityContext.runAsUser, 'the agent runs as another user than sidekey')
})

/** Kubernetes memory quantities (Mi, Gi, M, plain bytes) in MiB. */
function mib (q: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(q ?? '')
  if (m === null) return NaN
  const unit = { Ki: 1 / 1024, Mi: 1, Gi: 1024, k: 1e3 / 1048576, M: 1e6 / 1048576, G: 1e9 / 1048576 }[m[2] ?? ''] ?? 1 / 1048576
  return Number(m[1]) * unit
}

// The footprint docs/performance.md measured (npm run bench, sections start, idle and heap), in MiB.
const RSS_AT_REST = 80
const RSS_1000_TUNNELS = 140
const CA_CREATION_PEAK = 90

t.test('resources match the measured footprint', async (t) => {
  const sidecarRes = sidecar.resources as Obj
  t.ok(mib(sidecarRes.requests?.memory) >= RSS_AT_REST, `sidekey requests at least its RSS at rest (${RSS_AT_REST} MiB)`)
  t.ok(mib(sidecarRes.limits?.memory) >= RSS_1000_TUNNELS, `sidekey's limit holds 1,000 idle tunnels (${RSS_1000_TUNNELS} MiB)`)
  t.notOk(sidecarRes.limits?.cpu, 'no CPU limit on the sidecar: throttling becomes every call\'s tail latency')
  t.ok(mib((caInit.resources as Obj).limits?.memory) >= CA_CREATION_PEAK, `sidekey-ca's limit holds CA creation (${CA_CREATION_PEAK} MiB)`)
})

t.test('instance id from the pod name; config from the ConfigMap', async (t) => {
  for (const c of sidekeyContainers) {
    t.equal(env(c, 'SIDEKEY_INSTANCE_ID')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name', `${c.name as string}: SIDEKEY_INSTANCE_ID from the downward API`)
    const configArg = argAfter(c, '--config')
    const m = mountOf(c, configArg ?? '')
    t.equal(m?.volume.configMap?.name, find('ConfigMap').metadata.name, `${c.name as string}: --config is the ConfigMap's file`)
    t.equal(posix.basename(configArg ?? ''), 'sidekey.yaml')
  }
  t.match(find('ConfigMap').data['sidekey.yaml'], /instance_id: \$\{SIDEKEY_INSTANCE_ID\}/)
  const cfg = await podConfig(t)
  t.equal(cfg.instance_id, 'agent-7d9f8-abcde', 'the ConfigMap config is valid and takes the pod name')
  t.ok(Object.keys(cfg.tools).length > 0, 'it has a tool to try')
  t.equal(cfg.egress.unmatched, 'deny', 'unmatched destinations are refused')
})

t.test('ServiceAccount, NetworkPolicy and PodMonitor select this pod', async (t) => {
  const labels = deployment.spec.template.metadata.labels as Obj
  const selects = (sel: Obj | undefined): boolean => sel !== undefined && Object.entries(sel).every(([k, v]) => labels[k] === v)
  t.ok(selects(deployment.spec.selector.matchLabels), 'the Deployment selects its own pods')

  const sa = find('ServiceAccount')
  t.equal(pod.serviceAccountName, sa.metadata.name)
  t.equal(sa.automountServiceAccountToken, false)

  const np = find('NetworkPolicy')
  t.ok(selects(np.spec.podSelector.matchLabels), 'NetworkPolicy selects the agent pod')
  t.same([...np.spec.policyTypes].sort(), ['Egress', 'Ingress'], 'both directions are restricted')
  const egressPorts = (np.spec.egress as Obj[]).flatMap((r) => (r.ports as Obj[]).map((p) => `${p.protocol as string}/${p.port as number}`))
  t.same([...new Set(egressPorts)].sort(), ['TCP/443', 'TCP/53', 'UDP/53'], 'egress: DNS and HTTPS only')
  const blocks = (np.spec.egress as Obj[]).flatMap((r) => (r.to as Obj[]).filter((p) => p.ipBlock !== undefined).map((p) => p.ipBlock as Obj))
  t.ok(blocks.some((b) => b.cidr === '0.0.0.0/0' && (b.except as string[]).includes('169.254.0.0/16')), 'the metadata endpoint is excluded')
  const ingressPorts = (np.spec.ingress as Obj[]).flatMap((r) => (r.ports as Obj[]).map((p) => p.port as number))
  t.same(ingressPorts, [4751], 'ingress: the admin port only (metrics)')

  const pm = find('PodMonitor')
  t.ok(selects(pm.spec.selector.matchLabels), 'PodMonitor selects the agent pod')
  const endpoint = (pm.spec.podMetricsEndpoints as Obj[])[0] as Obj
  t.equal(endpoint.port, 'admin', 'scrapes the named admin port of the sidecar')
  t.equal(endpoint.path, '/metrics')
  const annotations = deployment.spec.template.metadata.annotations as Obj
  t.equal(annotations['prometheus.io/scrape'], 'true')
  t.equal(annotations['prometheus.io/port'], String((sidecar.ports as Obj[])[0]?.containerPort))
})

// kubectl is not part of every CI machine; where it is, kustomize must render the directory.
const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' })
t.test('kubectl kustomize renders the directory', { skip: kubectl.status === 0 ? false : 'kubectl not installed' }, async (t) => {
  const out = spawnSync('kubectl', ['kustomize', repoPath(DIR)], { encoding: 'utf8' })
  t.equal(out.status, 0, out.stderr)
  t.match(out.stdout, /image: sidekey:0\.1\.0/, 'the image tag from kustomization.yaml is applied')
  t.match(out.stdout, /kind: Deployment/)
})

// The optional fleet component (deploy/kubernetes/fleet/): NATS token Secret, operator JWKS ConfigMap, the mounts,
// and the config with a `fleet:` section; the base is untouched.
const FLEET = `${DIR}/fleet`
t.test('the fleet component: the Secret and the public operator keys mounted read-only into sidekey, a valid fleet config', async (t) => {
  const k = yamlDocs(`${FLEET}/kustomization.yaml`)[0] as Obj
  t.equal(k.kind, 'Component')
  for (const f of [...k.resources as string[], ...(k.patches as Obj[]).map((p) => p.path as string)]) t.ok(existsSync(repoPath(`${FLEET}/${f}`)), `${f} exists`)
  const secret = yamlDocs(`${FLEET}/secret.yaml`)[0] as Obj
  t.equal(secret.kind, 'Secret')
  t.match(secret.stringData.token, /^REPLACE/, 'a placeholder, not a token')
  const generated = (k.configMapGenerator as Obj[])[0] as Obj
  t.same(generated.files, ['operators.jwks'])
  t.same(privateKeysIn(`${FLEET}/operators.jwks`), [], 'the JWKS holds public keys only')
  t.equal((await loadOperatorKeys(repoPath(`${FLEET}/operators.jwks`))).size, 1, 'and sidekey accepts it')
  t.same(readdirSync(repoPath(FLEET)).filter((f) => /\.(pem|key)$/.test(f)), [], 'no private key file shipped')

  // The config: the base's, plus `fleet:`, and its files come from the mounts the patch adds.
  const cm = yamlDocs(`${FLEET}/sidekey-config.yaml`)[0] as Obj
  t.equal(cm.metadata.name, find('ConfigMap').metadata.name, 'patches the base ConfigMap')
  const dir = t.testdir({ 'sidekey.yaml': cm.data['sidekey.yaml'] })
  const cfg = await loadConfigFile(join(dir, 'sidekey.yaml'), { SIDEKEY_INSTANCE_ID: 'agent-7d9f8-abcde' })
  const { fleet, ...rest } = cfg
  t.same(rest, await podConfig(t), 'the same config as the base apart from fleet:')
  if (fleet === undefined) return t.fail('no fleet section')
  const patch = (yamlDocs(`${FLEET}/deployment-patch.yaml`)[0] as Obj).spec.template.spec
  t.same(patch.initContainers.map((c: Obj) => c.name), ['sidekey'], 'mounted into the sidekey container only')
  const patched: Obj = { ...pod, volumes: [...pod.volumes as Obj[], ...patch.volumes as Obj[]] }
  const sidekeyMounts = [...mounts(sidecar), ...patch.initContainers[0].volumeMounts as Obj[]]
  const source = (file: string): Obj | undefined => {
    const m = sidekeyMounts.find((x) => file.startsWith(`${x.mountPath as string}/`))
    return m === undefined ? undefined : { mount: m, volume: (patched.volumes as Obj[]).find((v) => v.name === m.name) }
  }
  const token = source(fleet.nats.token_file!)
  t.equal(token?.volume?.secret?.secretName, secret.metadata.name, 'fleet.nats.token_file is the Secret')
  t.equal(token?.mount.readOnly, true, 'mounted read-only')
  const keys = source(fleet.operator_keys)
  t.equal(keys?.volume?.configMap?.name, generated.name, 'fleet.operator_keys is the generated ConfigMap')
  t.equal(keys?.mount.readOnly, true, 'mounted read-only')
  t.ok(fleet.state_file?.startsWith(`${cfg.ca.dir}/`), 'the lock cache is in the writable CA volume')
  t.notOk(mounts(agent).some((m) => m.name === token?.mount.name || m.name === keys?.mount.name), 'the agent mounts neither')
})

t.test('kubectl kustomize renders an overlay with the fleet component', { skip: kubectl.status === 0 ? false : 'kubectl not installed' }, async (t) => {
  const dir = t.testdir({})
  const rel = (p: string): string => relative(dir, repoPath(p))
  writeFileSync(join(dir, 'kustomization.yaml'), `resources: [${rel(DIR)}]\ncomponents: [${rel(FLEET)}]\n`)
  const out = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' })
  t.equal(out.status, 0, out.stderr)
  t.match(out.stdout, /mountPath: \/run\/secrets\/sidekey-nats/)
  t.match(out.stdout, /name: sidekey-operators\n/)
  t.match(out.stdout, /\n {4}fleet:\n/)
})
