import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import t from 'tap'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { DAY, ManualClock, openssl, opensslVerify, tempDir } from './helpers.js'

const HOUR = 3_600_000

t.test('a leaf for a DNS host: verifies with openssl, SAN exactly the host, CA:FALSE, serverAuth, short validity', async (t) => {
  const dir = await tempDir(t)
  const clock = new ManualClock()
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY, clock })
  const leaf = await ca.mintLeaf('api.tool.test', 7 * DAY)

  const verified = await opensslVerify(dir, ca.certPem, ca.chainPem, leaf.certPem)
  t.equal(verified.code, 0, verified.stderr)

  const cert = new X509Certificate(leaf.certPem)
  t.equal(cert.subjectAltName, 'DNS:api.tool.test')
  t.equal(cert.ca, false)
  // Node 24 renamed keyUsage (which holds the EKU OIDs) to extKeyUsage.
  t.same((cert as { extKeyUsage?: string[] }).extKeyUsage ?? cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'EKU is serverAuth only')
  t.equal(cert.checkHost('api.tool.test'), 'api.tool.test')
  t.equal(cert.checkHost('other.tool.test'), undefined)
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.ok(cert.checkIssued(new X509Certificate(ca.chainPem)))
  t.ok(Date.parse(cert.validTo) <= clock.now() + 7 * DAY, 'notAfter within the configured validity')
  t.ok(Date.parse(cert.validFrom) <= clock.now() - 59_000, 'notBefore backdated a minute for clock skew')
  t.equal(leaf.notAfter.getTime(), clock.now() + 7 * DAY)
  t.match(cert.serialNumber, /^[0-7][0-9A-F]{31}$/, '16 random bytes, positive')

  const leafPath = join(dir, 'leaf.pem')
  await writeFile(leafPath, leaf.certPem)
  const text = (await openssl(['x509', '-noout', '-text', '-in', leafPath])).stdout
  t.match(text, /Basic Constraints: critical\s+CA:FALSE/)
  t.match(text, /Key Usage: critical\s+Digital Signature\n/)
  t.match(text, /Extended Key Usage:\s+TLS Web Server Authentication\n/)
  t.match(text, /Subject Alternative Name:\s+DNS:api\.tool\.test\n/)
  t.match(text, /Subject Key Identifier/)
  const issuerText = (await openssl(['x509', '-noout', '-text', '-in', join(dir, 'ca-issuer.pem')])).stdout
  const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(issuerText)?.[1]
  t.ok(ski, 'issuing CA has an SKI')
  t.match(text, new RegExp(`Authority Key Identifier:\\s+(keyid:)?${ski ?? 'none'}\n`), 'AKI names the issuing CA')
  t.match(createPrivateKey(leaf.keyPem).asymmetricKeyType, 'ec')
})

t.test('IP literals get an iPAddress SAN (IPv4, IPv6, IPv6 with IPv4 tail) and no DNS name', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  const cases: Array<[string, string]> = [
    ['127.0.0.1', 'IP Address:127.0.0.1'],
    ['::1', 'IP Address:0:0:0:0:0:0:0:1'],
    ['2001:db8::1', 'IP Address:2001:DB8:0:0:0:0:0:1'],
    ['::ffff:10.1.2.3', 'IP Address:0:0:0:0:0:FFFF:A01:203'],
  ]
  for (const [host, san] of cases) {
    const leaf = await ca.mintLeaf(host, DAY)
    const cert = new X509Certificate(leaf.certPem)
    t.equal(cert.subjectAltName, san, host)
    t.equal(cert.checkIP(host), host)
    t.notMatch(cert.subject, host, 'no IP in the CN (OpenSSL would check it as a DNS name)')
    t.equal((await opensslVerify(dir, ca.certPem, ca.chainPem, leaf.certPem)).code, 0)
  }
})

t.test('every leaf has its own fresh key and serial', async (t) => {
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 30 * DAY })
  const a = await ca.mintLeaf('api.tool.test', DAY)
  const b = await ca.mintLeaf('api.tool.test', DAY)
  const c = await ca.mintLeaf('other.tool.test', DAY)
  const spki = (pem: string): string => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('hex')
  t.equal(new Set([a, b, c].map((l) => spki(l.keyPem))).size, 3)
  t.equal(new Set([a, b, c].map((l) => new X509Certificate(l.certPem).serialNumber)).size, 3)
  t.equal(spki(a.keyPem), new X509Certificate(a.certPem).publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), 'key matches its cert')
})

t.test('a leaf never outlives the CA, and an expired CA mints nothing', async (t) => {
  const clock = new ManualClock()
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 2 * DAY, clock })
  const leaf = await ca.mintLeaf('api.tool.test', 30 * DAY)
  t.equal(leaf.notAfter.getTime(), ca.notAfter.getTime())
  t.ok(Date.parse(new X509Certificate(leaf.certPem).validTo) <= ca.notAfter.getTime())
  clock.advance(2 * DAY)
  await t.rejects(ca.mintLeaf('api.tool.test', HOUR), { code: 'SIDEKEY_CA_FAILED', message: /expired/ })
  await t.rejects(ca.mintLeaf('api.tool.test', 0), { code: 'SIDEKEY_CA_FAILED' })
})

t.test('a long validity past 2049 is encoded as GeneralizedTime and still parses', async (t) => {
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 40 * 365 * DAY })
  const leaf = await ca.mintLeaf('api.tool.test', 35 * 365 * DAY)
  t.equal(Date.parse(new X509Certificate(leaf.certPem).validTo), Math.floor(leaf.notAfter.getTime() / 1000) * 1000)
})

t.test('hosts that cannot go in a certificate are refused with SIDEKEY_BAD_REQUEST', async (t) => {
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 30 * DAY })
  for (const host of ['', 'API.tool.test', 'a b', 'a_b.test', 'a.test:443', '[::1]', 'fe80::1%eth0', '1:2', '.tool.test', 'a..b', 'x'.repeat(254), 'a\r\nb']) {
    await t.rejects(ca.mintLeaf(host, DAY), { code: 'SIDEKEY_BAD_REQUEST' }, JSON.stringify(host))
  }
  // A long but legal name gets no CN (64-char bound) and still verifies by its SAN.
  const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.tool.test`
  t.equal(new X509Certificate((await ca.mintLeaf(long, DAY)).certPem).subjectAltName, `DNS:${long}`)
})
