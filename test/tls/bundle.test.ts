import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { caBundle, systemRoots, writeCaBundle } from '../../src/tls/bundle.js'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { DAY, opensslVerify, tempDir, tlsGet, tlsServer } from './helpers.js'

t.test('the bundle holds every root it is given (Node\'s by default) plus the CA, and a bundle-only client trusts minted leaves', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir: join(dir, 'ca'), validityMs: 30 * DAY })
  const bundle = caBundle(ca.certPem)
  for (const root of tls.rootCertificates) t.ok(bundle.includes(root.trim()))
  t.ok(bundle.includes(ca.certPem.trim()))
  t.equal(bundle.match(/-----BEGIN CERTIFICATE-----/g)?.length, tls.rootCertificates.length + 1)
  t.notMatch(bundle, /PRIVATE KEY/)

  // What `sidekey ca --bundle` writes: this machine's store (test/tls/ca-lifecycle.test.ts injects one).
  const out = join(dir, 'bundle.pem')
  const system = caBundle(ca.certPem, (await systemRoots({})).pems)
  await writeCaBundle(out, ca.certPem, {})
  t.equal(await readFile(out, 'utf8'), system)
  t.equal((await stat(out)).mode & 0o777, 0o644)
  await writeCaBundle(out, ca.certPem, {}) // replaces atomically
  t.equal(await readFile(out, 'utf8'), system)

  const leaf = await ca.mintLeaf('api.tool.test', DAY)
  t.equal((await opensslVerify(dir, bundle, ca.chainPem, leaf.certPem)).code, 0, 'openssl -CAfile bundle')
  const port = await tlsServer(t, { key: leaf.keyPem, cert: leaf.certPem + ca.chainPem })
  t.equal(await tlsGet(port, { ca: bundle, servername: 'api.tool.test' }), 'ok api.tool.test', 'node with ca: bundle')
})

t.test('a bundle that cannot be written is a typed error naming the path', async (t) => {
  const dir = await tempDir(t)
  const out = join(dir, 'missing', 'bundle.pem')
  await t.rejects(writeCaBundle(out, '-----BEGIN CERTIFICATE-----\n'), { code: 'SIDEKEY_CA_FAILED', message: new RegExp(`${out}.*ENOENT`) })
})
