import { X509Certificate } from 'node:crypto'
import { chmod, copyFile, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { inspect } from 'node:util'
import t, { type Test } from 'tap'
import { CA_CERT_FILE, CA_ISSUER_FILE, CA_KEY_FILE, loadCa, loadOrCreateCa } from '../../src/tls/ca.js'
import { DAY, ManualClock, openssl, opensslVerify, tempDir } from './helpers.js'

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

/** The base64 body of a PEM file: what would show if the key leaked anywhere. */
const pemBody = (pem: string): string[] => pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))

/** An operator's own single-tier CA made with openssl in `dir` (key mode 0600), valid for `days`. */
async function operatorCa (t: Test, dir: string, days: number): Promise<void> {
  const made = await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', String(days),
    '-keyout', join(dir, CA_KEY_FILE), '-out', join(dir, CA_CERT_FILE), '-subj', '/CN=Operator CA/O=Example, Inc.',
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  t.equal(made.code, 0, 'openssl made the CA')
  await chmod(join(dir, CA_KEY_FILE), 0o600)
}

t.test('first start creates the CA: dir 0700, key 0600 PKCS#8, and a second start loads the same CA', async (t) => {
  const dir = join(await tempDir(t), 'ca')
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  t.equal(ca.origin, 'created')
  t.equal(ca.certPath, join(dir, CA_CERT_FILE))
  t.equal(await mode(dir), 0o700)
  t.equal(await mode(join(dir, CA_KEY_FILE)), 0o600)
  t.equal(await mode(join(dir, CA_CERT_FILE)), 0o644)
  t.match(await readFile(join(dir, CA_KEY_FILE), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/)
  t.equal(await readFile(ca.certPath, 'utf8'), ca.certPem)
  t.equal(await readFile(join(dir, CA_ISSUER_FILE), 'utf8'), ca.chainPem)
  t.same((await readdir(dir)).sort(), [CA_CERT_FILE, CA_KEY_FILE, CA_ISSUER_FILE].sort(), 'no temp files left behind')

  const again = await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  t.equal(again.origin, 'loaded')
  t.equal(again.fingerprint256, ca.fingerprint256)
  t.equal(again.certPem, ca.certPem)
  t.equal(again.chainPem, ca.chainPem)
  t.equal(ca.fingerprint256, new X509Certificate(ca.certPem).fingerprint256)

  // A leaf minted by the reloaded CA chains to the anchor agents already trust.
  const leaf = await again.mintLeaf('api.tool.test', DAY)
  t.equal((await opensslVerify(dir, ca.certPem, ca.chainPem, leaf.certPem)).code, 0)
})

t.test('the CA certificates: ECDSA P-256, CA:TRUE, pathlen 0 on the issuer, cert-signing usage, per-sidecar subject, bounded validity', async (t) => {
  const base = await tempDir(t)
  const clock = new ManualClock()
  const ca = await loadOrCreateCa({ dir: join(base, 'a'), validityMs: 30 * DAY, clock })
  const other = await loadOrCreateCa({ dir: join(base, 'b'), validityMs: 30 * DAY, clock })
  const anchor = new X509Certificate(ca.certPem)
  const issuer = new X509Certificate(ca.chainPem)
  t.ok(anchor.ca)
  t.ok(issuer.ca)
  t.ok(issuer.checkIssued(anchor) && issuer.verify(anchor.publicKey), 'issuing CA is signed by the anchor')
  t.equal(anchor.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.equal(issuer.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.not(anchor.subject, new X509Certificate(other.certPem).subject, 'subject carries a per-sidecar id')
  t.not(ca.fingerprint256, other.fingerprint256)
  for (const cert of [anchor, issuer]) {
    t.ok(Date.parse(cert.validTo) - Date.parse(cert.validFrom) <= 30 * DAY)
  }
  t.ok(ca.notAfter.getTime() <= clock.now() + 30 * DAY)

  const text = (await openssl(['x509', '-noout', '-text', '-in', join(base, 'a', CA_ISSUER_FILE)])).stdout
  t.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/)
  t.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/)
  t.match(text, /Subject Key Identifier/)
  t.notMatch(text, /Name Constraints/, 'unconstrained unless asked')
})

t.test('a key file readable by group or others is refused, naming the file and not the key', async (t) => {
  const dir = await tempDir(t)
  await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  const keyPath = join(dir, CA_KEY_FILE)
  const key = await readFile(keyPath, 'utf8')
  for (const bad of [0o640, 0o604, 0o644]) {
    await chmod(keyPath, bad)
    const err = await loadOrCreateCa({ dir, validityMs: 30 * DAY }).then(() => undefined, (e: unknown) => e as Error & { code: string })
    t.equal(err?.code, 'SIDEKEY_CA_FAILED', `mode ${bad.toString(8)}`)
    t.match(err?.message, keyPath)
    for (const line of pemBody(key)) t.notMatch(err?.message ?? '', line)
  }
  await chmod(keyPath, 0o600)
  t.equal((await loadOrCreateCa({ dir, validityMs: 30 * DAY })).origin, 'loaded', 'fixing the mode is enough')
})

t.test('a key that does not match the certificate, or is not a P-256 key, is refused', async (t) => {
  const base = await tempDir(t)
  const a = join(base, 'a')
  const b = join(base, 'b')
  await loadOrCreateCa({ dir: a, validityMs: 30 * DAY })
  await loadOrCreateCa({ dir: b, validityMs: 30 * DAY })
  await copyFile(join(b, CA_KEY_FILE), join(a, CA_KEY_FILE))
  await t.rejects(loadOrCreateCa({ dir: a, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca-key\.pem does not match/ })

  await writeFile(join(a, CA_KEY_FILE), 'not a key\n', { mode: 0o600 })
  await t.rejects(loadOrCreateCa({ dir: a, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca-key\.pem is not an ECDSA P-256 private key/ })

  const rsa = await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'])
  await writeFile(join(a, CA_KEY_FILE), rsa.stdout, { mode: 0o600 })
  await t.rejects(loadOrCreateCa({ dir: a, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /not an ECDSA P-256 private key/ })
})

t.test('a CA whose key was removed, or whose files are damaged, is refused rather than silently replaced', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  const keyPath = join(dir, CA_KEY_FILE)
  const key = await readFile(keyPath)
  await writeFile(keyPath, '', { mode: 0o600 })
  await t.rejects(loadOrCreateCa({ dir, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED' })
  const { unlink } = await import('node:fs/promises')
  await unlink(keyPath)
  await t.rejects(loadOrCreateCa({ dir, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca-key\.pem is missing/ })
  await writeFile(keyPath, key, { mode: 0o600 })

  const issuerPath = join(dir, CA_ISSUER_FILE)
  const other = await loadOrCreateCa({ dir: join(dir, 'other'), validityMs: 30 * DAY })
  await writeFile(issuerPath, other.chainPem)
  await t.rejects(loadOrCreateCa({ dir, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca-issuer\.pem is not signed by .*ca\.pem/ })
  await writeFile(issuerPath, (await ca.mintLeaf('api.tool.test', DAY)).certPem)
  await t.rejects(loadOrCreateCa({ dir, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca-issuer\.pem is not a CA certificate/ })
  await writeFile(issuerPath, ca.chainPem)
  t.equal((await loadOrCreateCa({ dir, validityMs: 30 * DAY })).fingerprint256, ca.fingerprint256, 'restored files load again')
  await writeFile(join(dir, CA_CERT_FILE), 'garbage')
  await t.rejects(loadOrCreateCa({ dir, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca\.pem is not a PEM certificate/ })
})

t.test('a CA expiring within a day is replaced on start; one with more life left is kept', async (t) => {
  const dir = await tempDir(t)
  const clock = new ManualClock()
  const first = await loadOrCreateCa({ dir, validityMs: 30 * DAY, clock })
  clock.advance(28 * DAY)
  t.equal((await loadOrCreateCa({ dir, validityMs: 30 * DAY, clock })).fingerprint256, first.fingerprint256)
  clock.advance(1.5 * DAY)
  const renewed = await loadOrCreateCa({ dir, validityMs: 30 * DAY, clock })
  t.equal(renewed.origin, 'replaced-expiring')
  t.not(renewed.fingerprint256, first.fingerprint256)
  t.ok(renewed.notAfter.getTime() > clock.now() + 29 * DAY)
  clock.advance(365 * DAY)
  t.equal((await loadOrCreateCa({ dir, validityMs: 30 * DAY, clock })).origin, 'replaced-expiring', 'an expired CA too')
})

t.test('an existing CA is never replaced for other name constraints: it keeps its own; rotate replaces it', async (t) => {
  const dir = await tempDir(t)
  const a = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: ['api.tool.test', '*.example.test', '10.0.0.5', '::1'] })
  t.same(a.nameConstraints, ['.example.test', '0000:0000:0000:0000:0000:0000:0000:0001', '10.0.0.5', 'api.tool.test'])
  const pem = await readFile(join(dir, 'ca.pem'), 'utf8')
  const same = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: ['.EXAMPLE.test', 'api.tool.test', 'api.tool.test'] })
  t.equal(same.origin, 'loaded')
  t.equal(same.fingerprint256, a.fingerprint256)
  for (const asked of [['api.tool.test', 'new.tool.test'], undefined, ['api.tool.test']]) {
    const kept = await loadOrCreateCa({ dir, validityMs: 30 * DAY, ...(asked === undefined ? {} : { nameConstraints: asked }) })
    t.equal(kept.origin, 'loaded', `asked for ${String(asked)}`)
    t.equal(kept.fingerprint256, a.fingerprint256)
    t.same(kept.nameConstraints, a.nameConstraints, 'it answers for its own constraints')
    t.notOk(kept.permits('new.tool.test'))
    t.ok(kept.permits('x.example.test'))
    t.ok(kept.permits('::1'))
  }
  t.equal(await readFile(join(dir, 'ca.pem'), 'utf8'), pem, 'ca.pem unchanged on disk')
  t.equal((await loadCa(dir))?.fingerprint256, a.fingerprint256, 'loadCa reads it without writing')
  t.equal(await loadCa(join(dir, 'none')), undefined)
  const rotated = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: ['api.tool.test', 'new.tool.test'], rotate: true })
  t.equal(rotated.origin, 'rotated')
  t.not(rotated.fingerprint256, a.fingerprint256)
  t.ok(rotated.permits('new.tool.test'))
  t.equal((await loadOrCreateCa({ dir, validityMs: 30 * DAY })).fingerprint256, rotated.fingerprint256)
})

t.test('the CA key appears in no JSON, inspect output or enumerable property', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY, nameConstraints: ['api.tool.test'] })
  const key = await readFile(join(dir, CA_KEY_FILE), 'utf8')
  const shown = [JSON.stringify(ca), inspect(ca, { depth: 10, showHidden: true }), String(Object.values(ca))]
  for (const text of shown) {
    t.notMatch(text, 'PRIVATE KEY')
    for (const line of pemBody(key)) t.notMatch(text, line)
  }
  t.match(JSON.parse(shown[0] ?? '{}'), { certPem: ca.certPem, fingerprint256: ca.fingerprint256 })
  t.notOk(Object.keys(ca).some((k) => /key/i.test(k)), 'no key-named property')
})

t.test('an existing single-tier CA (e.g. made with openssl) is loaded as is and signs leaves directly', async (t) => {
  const dir = await tempDir(t)
  await operatorCa(t, dir, 30)
  const ca = await loadOrCreateCa({ dir, validityMs: 365 * DAY })
  t.equal(ca.origin, 'loaded')
  t.equal(ca.chainPem, '')
  const leaf = await ca.mintLeaf('api.tool.test', DAY)
  const verified = await opensslVerify(dir, await readFile(join(dir, CA_CERT_FILE), 'utf8'), '', leaf.certPem)
  t.equal(verified.code, 0, verified.stderr)

  // It is the operator's key: refused, never overwritten, when constraints differ or it is about to expire.
  const key = await readFile(join(dir, CA_KEY_FILE), 'utf8')
  t.equal((await loadOrCreateCa({ dir, validityMs: 365 * DAY, nameConstraints: ['api.tool.test'] })).origin, 'loaded', 'other constraints asked: kept as is')
  await t.rejects(loadOrCreateCa({ dir, validityMs: 365 * DAY, rotate: true }), { code: 'SIDEKEY_CA_FAILED', message: /is to be rotated and was not created by sidekey/ })
  await t.rejects(loadOrCreateCa({ dir, validityMs: 365 * DAY, clock: new ManualClock(Date.now() + 29.5 * DAY) }), { code: 'SIDEKEY_CA_FAILED', message: /expires within a day/ })
  t.equal(await readFile(join(dir, CA_KEY_FILE), 'utf8'), key)
})

t.test('nonsense options are refused with typed errors', async (t) => {
  const dir = await tempDir(t)
  await t.rejects(loadOrCreateCa({ dir, validityMs: 1000 }), { code: 'SIDEKEY_CA_FAILED' })
  await t.rejects(loadOrCreateCa({ dir, validityMs: Number.NaN }), { code: 'SIDEKEY_CA_FAILED' })
  await t.rejects(loadOrCreateCa({ dir, validityMs: DAY, nameConstraints: ['api.tool.test:443'] }), { code: 'SIDEKEY_CONFIG_INVALID' })
  await writeFile(join(dir, 'file'), '')
  await t.rejects(loadOrCreateCa({ dir: join(dir, 'file', 'ca'), validityMs: DAY }), { code: 'SIDEKEY_CA_FAILED', message: /file\/ca.*ENOTDIR/ })
})

t.test('an operator CA valid past 2049 (GeneralizedTime) loads with its exact notAfter', async (t) => {
  const dir = await tempDir(t)
  await operatorCa(t, dir, 10_000)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  t.equal(ca.origin, 'loaded')
  const validTo = Date.parse(new X509Certificate(ca.certPem).validTo)
  t.ok(validTo > Date.UTC(2050, 0, 1), 'the certificate really uses GeneralizedTime')
  t.equal(ca.notAfter.getTime(), validTo)
  const leaf = await ca.mintLeaf('api.tool.test', DAY)
  t.equal((await opensslVerify(dir, ca.certPem, '', leaf.certPem)).code, 0)
})

t.test('a DER file in place of ca.pem is refused as not PEM', async (t) => {
  const dir = await tempDir(t)
  const ca = await loadOrCreateCa({ dir, validityMs: 30 * DAY })
  await writeFile(join(dir, CA_CERT_FILE), new X509Certificate(ca.certPem).raw)
  await t.rejects(loadOrCreateCa({ dir, validityMs: 30 * DAY }), { code: 'SIDEKEY_CA_FAILED', message: /ca\.pem is not a PEM certificate/ })
})
