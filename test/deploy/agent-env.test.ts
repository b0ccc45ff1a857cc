// The pod on loopback: sidekey runs the ConfigMap's config, the agent's clients run with exactly the agent
// container's environment from deployment.yaml (proxy variables, CA variables pointing at the bundle), and the
// tool must receive a JWT in place of the placeholder. Only the network is changed: httpbin.org is pinned to a
// local HTTPS echo, and the two paths inside the pod become temp files.
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { decodeJwt } from 'jose'
import t from 'tap'
import type { Test } from 'tap'
import { parseDocument } from 'yaml'
import { caBundle } from '../../src/tls/bundle.js'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { flagValue, repoPath, yamlDocs } from './helpers.js'
import type { Obj } from './helpers.js'

const run = promisify(execFile)
const POD = 'agent-5c9d7-x2k4q'

const manifests = ['configmap.yaml', 'deployment.yaml'].flatMap((f) => yamlDocs(`deploy/kubernetes/${f}`) as Obj[])
const configMap = manifests.find((d) => d.kind === 'ConfigMap') as Obj
const podSpec = (manifests.find((d) => d.kind === 'Deployment') as Obj).spec.template.spec as Obj
const agentEnv = ((podSpec.containers as Obj[]).find((c) => c.name === 'agent') as Obj).env as Array<{ name: string, value?: string }>
const bundleInPod = flagValue(((podSpec.initContainers as Obj[]).find((c) => c.name === 'sidekey-ca') as Obj).args as string[], '--bundle') as string

const pki = await upstreamPki()
const tool = await startUpstream({ tls: await pki.cert('httpbin.org') })
t.teardown(() => tool.close())

// The ConfigMap's config with the network pinned to loopback and the in-pod paths moved to temp files.
const dir = t.testdir({ 'admin-token': 'test-admin-token\n' })
const doc = parseDocument(configMap.data['sidekey.yaml'] as string)
doc.setIn(['ca', 'dir'], '{{CA_DIR}}')
doc.setIn(['admin', 'token_file'], join(dir, 'admin-token'))
doc.setIn(['tools', 'httpbin', 'match', 'port'], tool.port)
doc.set('resolve', { 'httpbin.org': '127.0.0.1' })
doc.set('upstream_ca_file', pki.caFile)
const sk = await startSidekey(t, doc.toString(), { env: { SIDEKEY_INSTANCE_ID: POD } })

// What the sidekey-ca init container writes: `sidekey ca --bundle` = the system roots plus this pod's CA.
const bundle = join(dir, 'bundle.pem')
writeFileSync(bundle, caBundle(readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')))

/** The agent container's environment, with the proxy's port and the bundle's path as they are in this test. */
const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' }
for (const { name, value } of agentEnv) {
  if (value === undefined) continue
  env[name] = value.replace('http://127.0.0.1:4750', sk.proxyUrl).replace(bundleInPod, bundle)
}
const url = `https://httpbin.org:${tool.port}/headers`

/** The tool got a JWT minted for this pod and this tool, not the placeholder; the use is audited. */
function assertInjected (t: Test, seenBefore: number): void {
  const seen = tool.seen[seenBefore]
  if (seen === undefined) {
    t.fail('the tool saw no request')
    return
  }
  const auth = String(seen.headers.authorization)
  t.match(auth, /^Bearer eyJ/, 'a Bearer JWT arrived')
  t.notMatch(auth, /sidekey$/, 'not the placeholder')
  t.match(decodeJwt(auth.slice(7)), { sub: POD, tool: 'httpbin', aud: 'https://httpbin.org' })
  const used = sk.log.events('credential.used').at(-1)
  t.match(used, { instance_id: POD, tool: 'httpbin', host: 'httpbin.org', status: 200, placeholder: 'stripped' })
}

// Probed before the first subtest: a top-level await between subtests can outlive them, and tap ends the root then.
const hasRequests = await run('python3', ['-c', 'import requests']).then(() => true, () => false)
t.test('curl with the agent container\'s environment', async (t) => {
  const before = tool.seen.length
  const { stdout } = await run('curl', ['-sS', '-H', 'Authorization: Bearer sidekey', url], { env })
  t.match(JSON.parse(stdout), { method: 'GET', url: '/headers' })
  assertInjected(t, before)
})

t.test('Node fetch with setGlobalDispatcher(new EnvHttpProxyAgent()) and NODE_EXTRA_CA_CERTS', async (t) => {
  const before = tool.seen.length
  const script = `import { setGlobalDispatcher, EnvHttpProxyAgent } from 'undici'
setGlobalDispatcher(new EnvHttpProxyAgent())
const res = await fetch(process.argv[1], { headers: { authorization: 'Bearer sidekey' } })
process.stdout.write(String(res.status))`
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, url], { env, cwd: repoPath('.') })
  t.equal(stdout, '200')
  assertInjected(t, before)
})

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
const envProxy = major > 24 || (major === 24 && minor >= 5) || (major === 22 && minor >= 21)
t.test('Node fetch with NODE_USE_ENV_PROXY=1 alone', { skip: envProxy ? false : `Node ${process.versions.node} has no NODE_USE_ENV_PROXY` }, async (t) => {
  const before = tool.seen.length
  const script = 'fetch(process.argv[1], { headers: { authorization: "Bearer sidekey" } }).then((r) => process.stdout.write(String(r.status)))'
  const { stdout } = await run(process.execPath, ['-e', script, url], { env: { ...env, NODE_USE_ENV_PROXY: '1' } })
  t.equal(stdout, '200')
  assertInjected(t, before)
})

t.test('Python requests with REQUESTS_CA_BUNDLE', { skip: hasRequests ? false : 'python3 requests not installed' }, async (t) => {
  const before = tool.seen.length
  const script = 'import sys, requests; r = requests.get(sys.argv[1], headers={"Authorization": "Bearer sidekey"}, timeout=10); print(r.status_code)'
  const { stdout } = await run('python3', ['-c', script, url], { env })
  t.equal(stdout.trim(), '200')
  assertInjected(t, before)
})

t.test('a host outside the config is refused, even with the agent\'s full environment', async (t) => {
  const before = tool.seen.length
  const out = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_connect}', `https://example.com:${tool.port}/`], { env })
    .catch((err: { stdout: string }) => err)
  t.equal(out.stdout, '403')
  t.equal(tool.seen.length, before, 'nothing reached the tool')
})
