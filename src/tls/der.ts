/**
 * The few DER shapes sidekey writes by hand (SAN, nameConstraints). Hand-encoded because @peculiar/x509 has no
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

/** The subject Name of a DER certificate, byte for byte (a leaf's issuer must match it exactly). */
export function certificateSubject (certDer: Uint8Array): Uint8Array {
  const tbs = readTlv(certDer, readTlv(certDer, 0).valueStart)
  let at = tbs.valueStart
  let field = readTlv(certDer, at)
  if (field.tag === 0xa0) field = readTlv(certDer, (at = field.end)) // optional [0] version
  // serialNumber, signature, issuer, validity, then subject
  for (let i = 0; i < 4; i++) field = readTlv(certDer, (at = field.end))
  return certDer.slice(field.start, field.end)
}
