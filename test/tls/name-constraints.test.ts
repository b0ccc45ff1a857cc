import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { CA_CERT_FILE, CA_ISSUER_FILE, loadOrCreateCa, type CertificateAuthority } from '../../src/tls/ca.js'
import { normaliseConstraints, permits } from '../../src/tls/names.js'
import { DAY, openssl, opensslVerify, tempDir, tlsGet, tlsServer } from './helpers.js'

/** A TLS server presenting, for each SNI name, a leaf minted straight from the CA (no allowlist in between). */
async function serverMintingAnything (t: Test, ca: CertificateAuthority): Promise<number> {
  return await tlsServer(t, {
    SNICallback: (name, cb) => {
      ca.mintLeaf(name, DAY).then((leaf) => {
        cb(null, tls.createSecureContext({ key: leaf.keyPem, cert: leaf.certPem + ca.chainPem }))
      }, (err: Error) => cb(err))
    },
  })
}

t.test('a CA constrained to api.tool.test: node tls and openssl accept that host and reject a leaf for evil.test', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: ['api.tool.test'] })
  const port = await serverMintingAnything(t, ca)

  t.equal(await tlsGet(port, { ca: ca.certPem, servername: 'api.tool.test' }), 'ok api.tool.test')
  await t.rejects(tlsGet(port, { ca: ca.certPem, servername: 'evil.test' }), { message: /permitted subtree violation/ })
  await t.rejects(tlsGet(port, { ca: ca.certPem, servername: 'sub.api.tool.test.evil.test' }), { message: /permitted subtree violation/ })

  const good = await opensslVerify(dir, ca.certPem, ca.chainPem, (await ca.mintLeaf('api.tool.test', DAY)).certPem)
  t.equal(good.code, 0, good.stderr)
  const evil = await opensslVerify(dir, ca.certPem, ca.chainPem, (await ca.mintLeaf('evil.test', DAY)).certPem)
  t.not(evil.code, 0)
  t.match(evil.stdout + evil.stderr, /permitted subtree violation/)
  // IP SANs are excluded when no IP is permitted: an IP leaf must not slip past a DNS-only constraint.
  const ip = await opensslVerify(dir, ca.certPem, ca.chainPem, (await ca.mintLeaf('127.0.0.1', DAY)).certPem)
  t.match(ip.stdout + ip.stderr, /excluded subtree violation/)
})

t.test('both the anchor and the issuing CA carry the critical constraint (some verifiers ignore it on a root)', async (t) => {
  const dir = await tempDir(t)
  await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: ['api.tool.test', '*.example.test', '10.0.0.1'] })
  for (const file of [CA_CERT_FILE, CA_ISSUER_FILE]) {
    const text = (await openssl(['x509', '-noout', '-text', '-in', join(dir, file)])).stdout
    t.match(text, /Name Constraints: critical\s+Permitted:\s+DNS:\.example\.test\s+IP:10\.0\.0\.1\/255\.255\.255\.255\s+DNS:api\.tool\.test\n/, file)
    t.notMatch(text, /Excluded/, 'an IP is permitted, so no blanket IP exclusion')
  }
  t.match(await readFile(join(dir, CA_CERT_FILE), 'utf8'), /^-----BEGIN CERTIFICATE-----/)
})

t.test('permits() agrees with OpenSSL on what a constrained CA may certify', async (t) => {
  const dir = await tempDir(t)
  const constraints = ['.wild.test', 'api.tool.test', '127.0.0.1', '::1']
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: constraints })
  const hosts = ['api.tool.test', 'v1.api.tool.test', 'tool.test', 'xapi.tool.test', 'a.wild.test', 'b.a.wild.test', 'wild.test',
    '127.0.0.1', '127.0.0.2', '::1', '::2', '0:0:0:0:0:0:0:1', 'evil.test']
  for (const host of hosts) {
    const verified = await opensslVerify(dir, ca.certPem, ca.chainPem, (await ca.mintLeaf(host, DAY)).certPem)
    t.equal(ca.permits(host), verified.code === 0, `${host}: permits()=${ca.permits(host)} openssl=${verified.code === 0}`)
  }
  t.ok(ca.permits('b.a.wild.test'))
  t.notOk(ca.permits('wild.test'), 'a leading dot means subdomains only')
})

t.test('an empty constraint list permits nothing', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: [] })
  for (const host of ['api.tool.test', '127.0.0.1', '::1']) {
    t.notOk(ca.permits(host))
    t.not((await opensslVerify(dir, ca.certPem, ca.chainPem, (await ca.mintLeaf(host, DAY)).certPem)).code, 0, host)
  }
})

t.test('constraint normalisation and refusal of things that are not host names', async (t) => {
  t.same(normaliseConstraints(['API.tool.test', '*.Example.test', 'api.tool.test', '[::1]', '0::1']), ['.example.test', '0000:0000:0000:0000:0000:0000:0000:0001', 'api.tool.test'])
  for (const bad of ['', '*', '*.', '.', 'a b', 'host:443', 'a..b', 'a_b.test', 'https://x.test', '*.*.test']) {
    t.throws(() => normaliseConstraints([bad]), { code: 'SIDEKEY_CONFIG_INVALID' }, JSON.stringify(bad))
  }
  t.ok(permits(undefined, 'anything.test'), 'unconstrained permits all')
})
