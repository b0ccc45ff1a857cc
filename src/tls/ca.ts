import { X509Certificate, createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto'
import type { Stats } from 'node:fs'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { SidekeyError } from '../errors.js'
import { type Clock, systemClock } from '../util/clock.js'
import { writeFileAtomic } from '../util/atomic-write.js'
import {
  basicConstraintsCa, type CertificateFields, certificateFields, findExtension, OCTET_STRING, tlvContents, toPem,
} from './der.js'
import { leafCertificate, leafSharedExtensions, leafTbs } from './leaf.js'
import { assertLeafHost, decodeNameConstraints, encodeNameConstraints, normaliseConstraints, permits } from './names.js'

// Loading a CA and minting leaves use only node:crypto. @peculiar/x509 (with reflect-metadata, tsyringe and the
// asn1 schema packages: ≈ 23 MB of RSS) is imported in createMaterial alone, when a CA has to be made.
const subtle = webcrypto.subtle
type CryptoKey = webcrypto.CryptoKey

/** The trust anchor agents install (public). */
export const CA_CERT_FILE = 'ca.pem'
/** The issuing (intermediate) CA certificate, sent after each leaf (public). */
export const CA_ISSUER_FILE = 'ca-issuer.pem'
/** The issuing CA's private key, PKCS#8 PEM, mode 0600. */
export const CA_KEY_FILE = 'ca-key.pem'

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const
const MINUTE = 60_000
const DAY = 86_400_000
const OID_NAME_CONSTRAINTS = Uint8Array.of(0x55, 0x1d, 0x1e)
const OID_BASIC_CONSTRAINTS = Uint8Array.of(0x55, 0x1d, 0x13)
const OID_SKI = Uint8Array.of(0x55, 0x1d, 0x0e)
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const

export interface LeafCertificate {
  /** The leaf alone; serve it followed by `CertificateAuthority.chainPem`. */
  certPem: string
  /** PKCS#8 PEM of the leaf's own fresh key. */
  keyPem: string
  notAfter: Date
}

/**
 * How this CA came to be on this start, so the caller can tell the operator when agents must re-trust it. An
 * existing CA is only ever replaced when it is about to expire (it is useless then) or on `sidekey ca --rotate`.
 */
export type CaOrigin = 'loaded' | 'created' | 'replaced-expiring' | 'rotated'

export interface CertificateAuthority {
  /** The trust anchor (contents of ca.pem): what agents add to their trust store. */
  readonly certPem: string
  readonly certPath: string
  /** Intermediate certificate(s) to send after each leaf; '' when the anchor signs leaves itself. */
  readonly chainPem: string
  /** SHA-256 fingerprint of the trust anchor, `AB:CD:...` as node prints it. */
  readonly fingerprint256: string
  /** The earliest notAfter of the anchor and the issuing CA; no leaf outlives it. */
  readonly notAfter: Date
  /** The CA's own permitted names (canonical), or undefined when it is unconstrained: what it can really cover. */
  readonly nameConstraints: readonly string[] | undefined
  readonly origin: CaOrigin
  /** Whether a leaf for `host` would pass the CA's name constraints (always true when unconstrained). */
  permits (host: string): boolean
  /** One fresh ECDSA P-256 key and one signature: a leaf for exactly `host`. */
  mintLeaf (host: string, validityMs: number): Promise<LeafCertificate>
}

export interface LoadOrCreateCaOptions {
  dir: string
  validityMs: number
  /** Tool hosts: `api.github.com`, `.example.com` (or `*.example.com`) for subdomains, IP literals. */
  nameConstraints?: readonly string[]
  clock?: Clock
  /** Replace an existing CA even though it is still valid (`sidekey ca --rotate`): agents must trust the new one. */
  rotate?: boolean
}

/**
 * Loads the CA from `dir`, or creates it there on first start (dir 0700, key 0600, written atomically).
 * An existing CA is kept whatever `nameConstraints` asks for: every agent trusts it, so replacing it would break
 * them all. It keeps its own constraints (`permits` answers for those); a tool host outside them is the caller's
 * to report. It is replaced only when it expires within a day (or half its validity, if shorter), or on `rotate`.
 * Refuses (SIDEKEY_CA_FAILED) a key readable by group/others or not matching.
 *
 * Layout: a self-signed anchor (ca.pem) whose key is discarded right after it signs one issuing CA
 * (ca-issuer.pem, key in ca-key.pem). Both carry the name constraints: some verifiers ignore constraints on a
 * trust anchor, and with the anchor key gone nobody can mint an unconstrained intermediate.
 * An existing single-tier CA (ca.pem + matching ca-key.pem, no ca-issuer.pem) is loaded as is, and refused rather
 * than overwritten when it is expiring or asked to rotate.
 */
export async function loadOrCreateCa (opts: LoadOrCreateCaOptions): Promise<CertificateAuthority> {
  const clock = opts.clock ?? systemClock
  if (!Number.isFinite(opts.validityMs) || opts.validityMs <= MINUTE) {
    throw new SidekeyError('SIDEKEY_CA_FAILED', 'CA validity must be longer than one minute')
  }
  const constraints = opts.nameConstraints === undefined ? undefined : normaliseConstraints(opts.nameConstraints)
  const paths = caPaths(opts.dir)
  const now = clock.now()
  const loaded = await loadMaterial(paths)
  const expiring = loaded !== undefined && notAfterMs(loaded) - now < Math.min(DAY, opts.validityMs / 2)
  if (loaded !== undefined && !expiring && opts.rotate !== true) return new LocalCa(loaded, paths.cert, 'loaded', clock)
  if (loaded !== undefined && loaded.issuer === loaded.anchor) {
    // Only a CA sidekey made (anchor + ca-issuer.pem) is replaced; an operator's own key is never overwritten.
    const why = expiring ? 'expires within a day' : 'is to be rotated'
    throw fail(`${paths.cert} ${why} and was not created by sidekey (no ${CA_ISSUER_FILE}); ` +
      `replace it, or remove ${paths.dir} to let sidekey create one`)
  }
  await ensureDir(paths.dir)
  const wantedNc = constraints === undefined ? undefined : Buffer.from(encodeNameConstraints(constraints))
  const material = await createMaterial(paths, opts.validityMs, wantedNc, now)
  const origin: CaOrigin = loaded === undefined ? 'created' : expiring ? 'replaced-expiring' : 'rotated'
  return new LocalCa(material, paths.cert, origin, clock)
}

/**
 * The CA in `dir` as `loadOrCreateCa` would load it, or undefined when there is none; never writes anything
 * (`sidekey check`, and `ca --rotate` to show what it replaces). Refuses what loadOrCreateCa refuses.
 */
export async function loadCa (dir: string, clock: Clock = systemClock): Promise<CertificateAuthority | undefined> {
  const paths = caPaths(dir)
  const loaded = await loadMaterial(paths)
  return loaded === undefined ? undefined : new LocalCa(loaded, paths.cert, 'loaded', clock)
}

function caPaths (dir: string): Paths {
  return { dir, cert: join(dir, CA_CERT_FILE), issuer: join(dir, CA_ISSUER_FILE), key: join(dir, CA_KEY_FILE) }
}

/** What a CA is made of once loaded; the key stays inside LocalCa after construction. */
interface Material {
  anchor: CaCertificate
  /** The certificate whose key signs leaves: the intermediate, or the anchor itself for a single-tier CA. */
  issuer: CaCertificate
  signingKey: CryptoKey
}

/** One CA certificate as read from its file: node's parse, its DER, and the few fields sidekey checks. */
interface CaCertificate {
  cert: X509Certificate
  der: Uint8Array
  fields: CertificateFields
  /** basicConstraints cA is true. */
  isCa: boolean
  /** The subjectKeyIdentifier's key id, if it has one. */
  keyId: Uint8Array | undefined
  /** The nameConstraints extension's value, if any. */
  nameConstraints: Buffer | undefined
}

interface Paths { dir: string, cert: string, issuer: string, key: string }

class LocalCa implements CertificateAuthority {
  readonly certPem: string
  readonly certPath: string
  readonly chainPem: string
  readonly fingerprint256: string
  readonly notAfter: Date
  readonly nameConstraints: readonly string[] | undefined
  readonly origin: CaOrigin
  readonly #signingKey: CryptoKey
  /** DER of the issuing CA's subject, and the DER extensions every leaf shares: built once, not per mint. */
  readonly #issuerName: Uint8Array
  readonly #leafExtensions: readonly Uint8Array[]
  readonly #clock: Clock

  constructor (m: Material, certPath: string, origin: CaOrigin, clock: Clock) {
    const constraints = constraintsOf(m)
    this.certPem = pem(m.anchor)
    this.certPath = certPath
    this.chainPem = m.issuer === m.anchor ? '' : pem(m.issuer)
    this.fingerprint256 = m.anchor.cert.fingerprint256
    this.notAfter = new Date(notAfterMs(m))
    this.nameConstraints = constraints === undefined ? undefined : Object.freeze([...constraints])
    this.origin = origin
    this.#signingKey = m.signingKey
    this.#issuerName = m.issuer.fields.subject
    this.#clock = clock
    this.#leafExtensions = leafSharedExtensions(m.issuer.keyId)
  }

  permits (host: string): boolean {
    return permits(this.nameConstraints, host)
  }

  async mintLeaf (host: string, validityMs: number): Promise<LeafCertificate> {
    assertLeafHost(host)
    const now = this.#clock.now()
    if (this.notAfter.getTime() <= now) {
      throw new SidekeyError('SIDEKEY_CA_FAILED', 'the interception CA has expired; restart sidekey to renew it')
    }
    if (!Number.isFinite(validityMs) || validityMs <= 0) {
      throw new SidekeyError('SIDEKEY_CA_FAILED', 'leaf validity must be positive')
    }
    const keys = await subtle.generateKey(EC, true, ['sign', 'verify'])
    const notAfter = new Date(Math.min(now + validityMs, this.notAfter.getTime()))
    const tbs = leafTbs({
      host,
      serial: randomSerial(),
      issuerName: this.#issuerName,
      notBefore: new Date(now - MINUTE),
      notAfter,
      spki: new Uint8Array(await subtle.exportKey('spki', keys.publicKey)),
      sharedExtensions: this.#leafExtensions,
    })
    const signature = new Uint8Array(await subtle.sign(SIGN, this.#signingKey, tbs))
    const pkcs8 = new Uint8Array(await subtle.exportKey('pkcs8', keys.privateKey))
    const certPem = toPem('CERTIFICATE', leafCertificate(tbs, signature))
    return { certPem, keyPem: toPem('PRIVATE KEY', pkcs8), notAfter }
  }
}

function pem (cert: CaCertificate): string {
  return toPem('CERTIFICATE', cert.der)
}

/** 16 random bytes, positive, with no leading zero byte to trim (so always 16 bytes in DER). */
function randomSerial (): Buffer {
  const bytes = randomBytes(16)
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40
  return bytes
}

function notAfterMs (m: Material): number {
  return Math.min(m.anchor.fields.notAfter.getTime(), m.issuer.fields.notAfter.getTime())
}

/** The names the issuing CA may sign for (its own constraints, else the anchor's); undefined when unconstrained. */
function constraintsOf (m: Material): string[] | undefined {
  const nc = m.issuer.nameConstraints ?? m.anchor.nameConstraints
  if (nc === undefined) return undefined
  try {
    return decodeNameConstraints(nc)
  } catch {
    return [] // constraints sidekey cannot read: claim to cover nothing rather than everything
  }
}

function fail (message: string, cause?: unknown): SidekeyError {
  return new SidekeyError('SIDEKEY_CA_FAILED', message, cause === undefined ? {} : { cause })
}

/** Wrap a filesystem error: the path and errno code are safe to show, the file's contents never are. */
function fsFail (what: string, path: string, err: unknown): SidekeyError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error'
  return fail(`cannot ${what} ${path} (${code})`, err)
}

async function ensureDir (dir: string): Promise<void> {
  try {
    const created = await mkdir(dir, { recursive: true, mode: 0o700 })
    if (created !== undefined) await chmod(dir, 0o700)
  } catch (err) {
    throw fsFail('create CA directory', dir, err)
  }
}

async function readIfPresent (path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fsFail('read', path, err)
  }
}

function parseCert (data: Buffer, path: string): CaCertificate {
  try {
    // PEM only (node would also take DER): the file is documented, and handed to agents, as PEM.
    if (!data.includes('-----BEGIN CERTIFICATE-----')) throw new Error('not PEM')
    const cert = new X509Certificate(data)
    const der = new Uint8Array(cert.raw)
    const fields = certificateFields(der)
    const bc = findExtension(fields, OID_BASIC_CONSTRAINTS)
    const ski = findExtension(fields, OID_SKI)
    const nc = findExtension(fields, OID_NAME_CONSTRAINTS)
    return {
      cert,
      der,
      fields,
      isCa: bc !== undefined && basicConstraintsCa(bc.value),
      keyId: ski === undefined ? undefined : tlvContents(ski.value, OCTET_STRING),
      nameConstraints: nc === undefined ? undefined : Buffer.from(nc.value),
    }
  } catch {
    throw fail(`${path} is not a PEM certificate`)
  }
}

/** undefined when there is no CA yet (no ca.pem); throws when what is there cannot be used safely. */
async function loadMaterial (paths: Paths): Promise<Material | undefined> {
  const anchorData = await readIfPresent(paths.cert)
  if (anchorData === undefined) return undefined
  const anchor = parseCert(anchorData, paths.cert)
  const issuerData = await readIfPresent(paths.issuer)
  const issuer = issuerData === undefined ? anchor : parseCert(issuerData, paths.issuer)
  const issuerPath = issuerData === undefined ? paths.cert : paths.issuer

  if (!issuer.isCa) throw fail(`${issuerPath} is not a CA certificate`)
  if (issuer !== anchor && !issuer.cert.verify(anchor.cert.publicKey)) {
    throw fail(`${paths.issuer} is not signed by ${paths.cert}`)
  }

  let st: Stats
  try {
    st = await stat(paths.key)
  } catch (err) {
    // ca.pem is written last, so a missing key is not a half-finished creation: someone removed it.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw fail(`${paths.key} is missing; remove ${paths.dir} to create a new CA ` +
        `(agents must then trust the new ${CA_CERT_FILE})`)
    }
    throw fsFail('stat', paths.key, err)
  }
  if (!st.isFile()) throw fail(`${paths.key} is not a regular file`)
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
    throw fail(`${paths.key} is accessible by group or others (mode ${mode}); run chmod 600 on it`)
  }
  const keyData = await readIfPresent(paths.key)
  if (keyData === undefined) throw fail(`${paths.key} is missing`)
  try {
    return { anchor, issuer, signingKey: await importSigningKey(keyData, issuer, paths.key, issuerPath) }
  } finally {
    keyData.fill(0)
  }
}

async function importSigningKey (
  keyData: Buffer, issuer: CaCertificate, keyPath: string, certPath: string
): Promise<CryptoKey> {
  let pkcs8: Buffer
  try {
    const key = createPrivateKey({ key: keyData, format: 'pem' })
    const p256 = key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
    if (!p256) throw new Error('not P-256')
    const pub = createPublicKey(key).export({ type: 'spki', format: 'der' })
    if (!pub.equals(issuer.fields.spki)) {
      throw fail(`${keyPath} does not match the certificate in ${certPath}`)
    }
    pkcs8 = key.export({ type: 'pkcs8', format: 'der' })
  } catch (err) {
    if (err instanceof SidekeyError) throw err
    // No cause: a parser's message could quote bytes of the key.
    throw fail(`${keyPath} is not an ECDSA P-256 private key in PEM`)
  }
  try {
    return await subtle.importKey('pkcs8', pkcs8, EC, false, ['sign'])
  } finally {
    pkcs8.fill(0)
  }
}

async function createMaterial (
  paths: Paths, validityMs: number, nameConstraints: Buffer | undefined, now: number
): Promise<Material> {
  // Loaded here, never at start-up: see the note at the top of this file.
  const { x509 } = await import('./x509.js')
  const id = randomBytes(8).toString('hex')
  const notBefore = new Date(now - MINUTE)
  const notAfter = new Date(now - MINUTE + validityMs)
  const nc = nameConstraints === undefined
    ? []
    : [new x509.Extension('2.5.29.30' /* nameConstraints */, true, nameConstraints)]
  const caUsage = new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)

  // The anchor's key is never extractable and never leaves this function.
  const anchorKeys = await subtle.generateKey(EC, false, ['sign', 'verify'])
  const issuerKeys = await subtle.generateKey(EC, true, ['sign', 'verify'])
  const anchorSki = await x509.SubjectKeyIdentifierExtension.create(anchorKeys.publicKey)
  const anchorName = new x509.Name(`CN=sidekey root CA ${id}, O=sidekey`)
  const anchor = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial().toString('hex'),
    subject: anchorName,
    issuer: anchorName,
    notBefore,
    notAfter,
    publicKey: anchorKeys.publicKey,
    signingKey: anchorKeys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(true, 1, true), caUsage, anchorSki, ...nc],
  })
  const issuer = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial().toString('hex'),
    subject: `CN=sidekey issuing CA ${id}, O=sidekey`,
    issuer: anchorName,
    notBefore,
    notAfter,
    publicKey: issuerKeys.publicKey,
    signingKey: anchorKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      caUsage,
      await x509.SubjectKeyIdentifierExtension.create(issuerKeys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(anchorSki.keyId, false),
      ...nc,
    ],
  })

  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', issuerKeys.privateKey))
  const keyPem = Buffer.from(toPem('PRIVATE KEY', pkcs8))
  try {
    // ca.pem goes last: its presence means the set is complete.
    await write(paths.key, keyPem, 0o600)
    const issuerPem = Buffer.from(toPem('CERTIFICATE', new Uint8Array(issuer.rawData)))
    const anchorPem = Buffer.from(toPem('CERTIFICATE', new Uint8Array(anchor.rawData)))
    await write(paths.issuer, issuerPem, 0o644)
    await write(paths.cert, anchorPem, 0o644)
    return {
      // Read back as a loaded CA is, so both paths hold the same shape.
      anchor: parseCert(anchorPem, paths.cert),
      issuer: parseCert(issuerPem, paths.issuer),
      signingKey: await subtle.importKey('pkcs8', pkcs8, EC, false, ['sign']),
    }
  } finally {
    pkcs8.fill(0)
    keyPem.fill(0)
  }
}

async function write (path: string, data: string | Buffer, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, data, mode)
  } catch (err) {
    throw fsFail('write', path, err)
  }
}
