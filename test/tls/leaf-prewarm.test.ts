import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { ProxyAgent, request } from 'undici'
import type { LeafCertificate } from '../../src/tls/ca.js'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { LeafCache } from '../../src/tls/leaf-cache.js'
import { until } from '../helpers/until.js'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { DAY, tempDir } from './helpers.js'

const pki = await upstreamPki()
const upstream = await startUpstream({ tls: await pki.cert('api.tool.test') })
t.teardown(() => upstream.close())

// No name constraints: the reload below adds a host the CA must be able to sign for.
const yaml = (caDir: string, extra = ''): string => `instance_id: prewarm
ca: { dir: ${caDir}, name_constraints: false }
upstream_ca_file: ${pki.caFile}
resolve: { api.tool.test: 127.0.0.1, plain.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: API.Tool.Test., port: ${upstream.port} }, issuer: local }
  wild: { match: { host: '*.wild.tool.test' }, issuer: local }
  plain: { match: { host: plain.tool.test }, issuer: local, plaintext: true }
${extra}`

t.test('after start, the leaf for each exact tool host is cached before any request; the first call mints nothing', async (t) => {
  const dir = await tempDir(t)
  const sk = await startSidekey(t, yaml(join(dir, 'ca')))
  await until(() => sk.app.leaves.has('api.tool.test'))
  t.equal(sk.app.leaves.size, 1, 'only the exact host: no wildcard, no plaintext tool')
  t.notOk(sk.app.leaves.has('plain.tool.test'))

  // From here on every mint is counted: the agent's first call to the tool must not need one.
  const minted: string[] = []
  const mintLeaf = sk.app.ca.mintLeaf.bind(sk.app.ca)
  Object.assign(sk.app.ca, { mintLeaf: async (host: string, ms: number): Promise<LeafCertificate> => { minted.push(host); return await mintLeaf(host, ms) } })
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: sk.app.ca.certPem } })
  t.teardown(() => agent.close())
  const res = await request(`https://api.tool.test:${upstream.port}/v1`, { dispatcher: agent, headers: { authorization: 'Bearer placeholder' } })
  const body = await res.body.json() as { authorization: string }
  t.equal(res.statusCode, 200)
  const injected = upstream.seen.at(-1)?.headers.authorization ?? ''
  t.match(injected, /^Bearer ey/, 'the upstream saw the injected credential')
  t.not(body.authorization, injected, 'the agent read its echo without it')
  t.same(minted, [], 'the first CONNECT to the tool host used the leaf minted at start')
})

t.test('a reload that adds a tool host mints its leaf without a request', async (t) => {
  const dir = await tempDir(t)
  const caDir = join(dir, 'ca')
  const file = join(dir, 'sidekey.yaml')
  await writeFile(file, yaml(caDir))
  const sk = await startSidekey(t, yaml(caDir), { configFile: file })
  await until(() => sk.app.leaves.has('api.tool.test'))
  await writeFile(file, yaml(caDir, '  added: { match: { host: added.tool.test }, issuer: local }\n'))
  await sk.app.reload()
  await until(() => sk.app.leaves.has('added.tool.test'))
  t.equal(sk.app.leaves.size, 2)
})

t.test('prewarm: one mint at a time, bounded by the cache size, skipping cached, refused and malformed hosts', async (t) => {
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 30 * DAY, nameConstraints: ['.tool.test'] })
  const leaves = new LeafCache({ ca, validityMs: DAY, max: 2 })
  let inFlight = 0
  let most = 0
  const mintLeaf = ca.mintLeaf.bind(ca)
  Object.assign(ca, {
    mintLeaf: async (host: string, ms: number): Promise<LeafCertificate> => {
      most = Math.max(most, ++inFlight)
      try { return await mintLeaf(host, ms) } finally { inFlight-- }
    },
  })
  await leaves.secureContext('a.tool.test')
  const minted = await leaves.prewarm(['a.tool.test', 'outside.example', 'bad host', 'b.tool.test', 'b.tool.test', 'c.tool.test', 'd.tool.test'])
  t.equal(minted, 2, 'b and c: a was cached, the refused and malformed names minted nothing, d is past the cache size')
  t.equal(most, 1, 'never more than one background mint at once')
  t.ok(leaves.has('b.tool.test') && leaves.has('c.tool.test'))
  t.notOk(leaves.has('d.tool.test'))

  // A newer run (a reload) replaces one still going; stopPrewarm (close) ends it.
  const first = leaves.prewarm(['x1.tool.test', 'x2.tool.test'])
  const second = leaves.prewarm(['y.tool.test'])
  t.equal(await first, 0)
  t.equal(await second, 1)
  const stopped = leaves.prewarm(['z.tool.test'])
  leaves.stopPrewarm()
  t.equal(await stopped, 0)
})
