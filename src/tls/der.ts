/**
 * The few DER shapes sidekey writes by hand (SAN, nameConstraints, leaves), and the few fields it reads from a
 * loaded CA certificate (so loading needs no X.509 library). Hand-encoded because @peculiar/x509 has no
 * nameConstraints builder and its IP parser does not take IPv6 with an embedded IPv4 tail.
 */

/** One DER TLV with a single-byte tag. */
export function tlv (tag: number, ...contents: Uint8Array[]): Uint8Array {
  const length = contents.reduce((n, c) => n + c.length, 0)
  const header = [tag, ...encodeLength(length)]
  const out = new Uint8Array(header.length + length)
  out.set(header, 0)
  let at = header.length
  for (const c of contents) {
    out.set(c, at)
    at += c.length
  }
  return out
}

function encodeLength (n: number): number[] {
  if (n < 0x80) return [n]
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return [0x80 | bytes.length, ...bytes]
}

export const SEQUENCE = 0x30
/** GeneralName dNSName [2] IMPLICIT IA5String. */
export const DNS_NAME = 0x82
/** GeneralName iPAddress [7] IMPLICIT OCTET STRING. */
export const IP_ADDRESS = 0x87
/** NameConstraints permittedSubtrees [0] / excludedSubtrees [1] (constructed). */
export const PERMITTED = 0xa0
export const EXCLUDED = 0xa1

export function ascii (s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'latin1'))
}

export const BOOLEAN = 0x01
export const INTEGER = 0x02
export const BIT_STRING = 0x03
export const OCTET_STRING = 0x04
export const OID = 0x06
export const UTF8_STRING = 0x0c
export const SET = 0x31
export const UTC_TIME = 0x17
export const GENERALIZED_TIME = 0x18

/** A non-negative INTEGER from big-endian magnitude bytes: minimal, with a 0x00 pad when the top bit is set. */
export function unsignedInteger (bytes: Uint8Array): Uint8Array {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const body = bytes.subarray(start)
  return (body[0] ?? 0) & 0x80 ? tlv(INTEGER, Uint8Array.of(0), body) : tlv(INTEGER, body)
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always whole seconds in UTC. */
export function time (date: Date): Uint8Array {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') + 'Z'
  const year = date.getUTCFullYear()
  return year >= 1950 && year < 2050 ? tlv(UTC_TIME, ascii(digits.slice(2))) : tlv(GENERALIZED_TIME, ascii(digits))
}

/** PEM armour (64-column base64) for DER bytes. */
export function toPem (label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64')
  return `-----BEGIN ${label}-----\n${b64.replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`
}

interface Tlv { tag: number, start: number, valueStart: number, end: number }

function readTlv (der: Uint8Array, at: number): Tlv {
  const tag = der[at] ?? -1
  let len = der[at + 1] ?? 0
  let valueStart = at + 2
  if (len & 0x80) {
    const n = len & 0x7f
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + (der[valueStart + i] ?? 0)
    valueStart += n
  }
  const end = valueStart + len
  if (tag < 0 || end > der.length) throw new Error('truncated DER')
  return { tag, start: at, valueStart, end }
}

/** An extension of a parsed certificate: extnValue is the contents of its OCTET STRING. */
export interface CertificateExtension { oid: Uint8Array, critical: boolean, value: Uint8Array }

/** The parts of a DER certificate sidekey reads when it loads a CA, each byte for byte as in the certificate. */
export interface CertificateFields {
  /** The subject Name (a leaf's issuer must match it exactly). */
  subject: Uint8Array
  notAfter: Date
  /** The SubjectPublicKeyInfo. */
  spki: Uint8Array
  extensions: readonly CertificateExtension[]
}

/**
 * Reads a certificate that OpenSSL has already parsed (node's X509Certificate), so only the shapes RFC 5280
 * allows are expected; anything else throws a plain Error for the caller to wrap.
 */
export function certificateFields (certDer: Uint8Array): CertificateFields {
  const tbs = readTlv(certDer, readTlv(certDer, 0).valueStart)
  const fields: Tlv[] = []
  for (let at = tbs.valueStart; at < tbs.end;) {
    const field = readTlv(certDer, at)
    fields.push(field)
    at = field.end
  }
  // An optional [0] version, then serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo.
  const first = fields[0]?.tag === 0xa0 ? 1 : 0
  const [validity, subject, spki] = [fields[first + 3], fields[first + 4], fields[first + 5]]
  if (validity === undefined || subject === undefined || spki === undefined) throw new Error('truncated certificate')
  const notAfter = readTlv(certDer, readTlv(certDer, validity.valueStart).end)
  const extensions = fields.slice(first + 6).find((f) => f.tag === 0xa3)
  return {
    subject: certDer.slice(subject.start, subject.end),
    notAfter: parseTime(
      notAfter.tag, Buffer.from(certDer.subarray(notAfter.valueStart, notAfter.end)).toString('latin1')
    ),
    spki: certDer.slice(spki.start, spki.end),
    extensions: extensions === undefined ? [] : readExtensions(certDer, readTlv(certDer, extensions.valueStart)),
  }
}

/** The first extension with this OID (content bytes of the OBJECT IDENTIFIER), if any. */
export function findExtension (cert: CertificateFields, oid: Uint8Array): CertificateExtension | undefined {
  return cert.extensions.find((e) => Buffer.from(e.oid).equals(oid))
}

/** The contents of the outermost TLV in `der` (e.g. the key id inside a subjectKeyIdentifier's OCTET STRING). */
export function tlvContents (der: Uint8Array, tag: number): Uint8Array {
  const t = readTlv(der, 0)
  if (t.tag !== tag) throw new Error('unexpected DER tag')
  return der.subarray(t.valueStart, t.end)
}

/** The TLVs directly inside the outermost TLV of `der` (tag checked): e.g. the subtrees of a NameConstraints. */
export function tlvChildren (der: Uint8Array, tag: number): Array<{ tag: number, value: Uint8Array }> {
  const outer = readTlv(der, 0)
  if (outer.tag !== tag) throw new Error('unexpected DER tag')
  const out: Array<{ tag: number, value: Uint8Array }> = []
  for (let at = outer.valueStart; at < outer.end;) {
    const child = readTlv(der, at)
    out.push({ tag: child.tag, value: der.subarray(child.start, child.end) })
    at = child.end
  }
  return out
}

/** basicConstraints' cA flag: a BOOLEAN first in the SEQUENCE, absent meaning false (its DER default). */
export function basicConstraintsCa (value: Uint8Array): boolean {
  const seq = tlvContents(value, SEQUENCE)
  return seq.length > 0 && seq[0] === BOOLEAN && tlvContents(seq, BOOLEAN)[0] !== 0
}

function readExtensions (der: Uint8Array, list: Tlv): CertificateExtension[] {
  const out: CertificateExtension[] = []
  for (let at = list.valueStart; at < list.end;) {
    const ext = readTlv(der, at)
    const oid = readTlv(der, ext.valueStart)
    let next = readTlv(der, oid.end)
    const critical = next.tag === BOOLEAN && der[next.valueStart] !== 0
    if (next.tag === BOOLEAN) next = readTlv(der, next.end)
    if (oid.tag !== OID || next.tag !== OCTET_STRING) throw new Error('malformed extension')
    out.push({ oid: der.slice(oid.valueStart, oid.end), critical, value: der.slice(next.valueStart, next.end) })
    at = ext.end
  }
  return out
}

/** UTCTime (years 1950-2049) or GeneralizedTime, in the UTC forms RFC 5280 allows (a fraction is tolerated). */
function parseTime (tag: number, text: string): Date {
  const m = tag === UTC_TIME
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : tag === GENERALIZED_TIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d+)?Z$/.exec(text) : null
  if (m === null) throw new Error('unsupported time')
  const n = m.slice(1, 7).map(Number) as [number, number, number, number, number, number]
  const year = tag === UTC_TIME ? (n[0] < 50 ? 2000 : 1900) + n[0] : n[0]
  const ms = m[7] === undefined ? 0 : Math.floor(Number(m[7]) * 1000)
  return new Date(Date.UTC(year, n[1] - 1, n[2], n[3], n[4], n[5], ms))
}
