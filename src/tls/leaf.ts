import { createHash } from 'node:crypto'
import { ipFamily } from '../net/family.js'
import {
  ascii, BIT_STRING, BOOLEAN, OCTET_STRING, OID, SEQUENCE, SET, time, tlv, unsignedInteger, UTF8_STRING,
} from './der.js'
import { encodeSan } from './names.js'

/**
 * The leaf certificate body, DER-encoded by hand. A leaf is minted on the first CONNECT to each host, and
 * building it through @peculiar/x509's generic ASN.1 serialiser (serialise, re-parse, re-serialise) cost ~2 ms of
 * event-loop CPU per mint; this is a few array copies. Only creating a CA uses the library (see ca.ts).
 */

const ECDSA_WITH_SHA256 = tlv(SEQUENCE, Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02))
const OID_CN = Uint8Array.of(0x55, 0x04, 0x03)
const OID_O = Uint8Array.of(0x55, 0x04, 0x0a)
const OID_SKI = Uint8Array.of(0x55, 0x1d, 0x0e)
const OID_SAN = Uint8Array.of(0x55, 0x1d, 0x11)
const OID_KEY_USAGE = Uint8Array.of(0x55, 0x1d, 0x0f)
const OID_BASIC_CONSTRAINTS = Uint8Array.of(0x55, 0x1d, 0x13)
const OID_EXT_KEY_USAGE = Uint8Array.of(0x55, 0x1d, 0x25)
const OID_AKI = Uint8Array.of(0x55, 0x1d, 0x23)
/** id-kp-serverAuth, 1.3.6.1.5.5.7.3.1. */
const OID_SERVER_AUTH = Uint8Array.of(0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01)
const VERSION_3 = Uint8Array.of(0xa0, 0x03, 0x02, 0x01, 0x02)

export interface LeafTbsParams {
  host: string
  serial: Uint8Array
  /** DER of the issuer's subject Name, byte for byte. */
  issuerName: Uint8Array
  notBefore: Date
  notAfter: Date
  /** DER SubjectPublicKeyInfo of the leaf's P-256 key. */
  spki: Uint8Array
  /** DER Extension SEQUENCEs every leaf shares (basicConstraints, keyUsage, EKU, AKI). */
  sharedExtensions: readonly Uint8Array[]
}

export function leafTbs (p: LeafTbsParams): Uint8Array {
  // CN only for DNS names that fit its 64-char bound; OpenSSL would check an IP-looking CN as a DNS name.
  const subject = ipFamily(p.host) === 0 && p.host.length <= 64 ? rdn(OID_CN, p.host) : rdn(OID_O, 'sidekey')
  // RFC 5280 method 1: SHA-1 of the subjectPublicKey bits (the 65-byte P-256 point ending the SPKI).
  const keyId = createHash('sha1').update(p.spki.subarray(p.spki.length - 65)).digest()
  const extensions = [
    ...p.sharedExtensions,
    extension(OID_SAN, encodeSan(p.host)),
    extension(OID_SKI, tlv(OCTET_STRING, keyId)),
  ]
  return tlv(SEQUENCE,
    VERSION_3,
    unsignedInteger(p.serial),
    ECDSA_WITH_SHA256,
    p.issuerName,
    tlv(SEQUENCE, time(p.notBefore), time(p.notAfter)),
    subject,
    p.spki,
    tlv(0xa3, tlv(SEQUENCE, ...extensions)))
}

/**
 * The extensions every leaf of one issuing CA shares: basicConstraints (critical, not a CA), keyUsage
 * digitalSignature (critical), extKeyUsage serverAuth, and authorityKeyIdentifier when the issuer has a key id.
 */
export function leafSharedExtensions (issuerKeyId: Uint8Array | undefined): Uint8Array[] {
  return [
    extension(OID_BASIC_CONSTRAINTS, tlv(SEQUENCE), true),
    // BIT STRING with 7 unused bits: only bit 0, digitalSignature.
    extension(OID_KEY_USAGE, tlv(BIT_STRING, Uint8Array.of(0x07, 0x80)), true),
    extension(OID_EXT_KEY_USAGE, tlv(SEQUENCE, tlv(OID, OID_SERVER_AUTH))),
    // keyIdentifier [0] IMPLICIT OCTET STRING.
    ...(issuerKeyId === undefined ? [] : [extension(OID_AKI, tlv(SEQUENCE, tlv(0x80, issuerKeyId)))]),
  ]
}

/** The signed certificate, from the TBS and WebCrypto's raw (r || s) ECDSA signature. */
export function leafCertificate (tbs: Uint8Array, p1363: Uint8Array): Uint8Array {
  const half = p1363.length / 2
  const sig = tlv(SEQUENCE, unsignedInteger(p1363.subarray(0, half)), unsignedInteger(p1363.subarray(half)))
  return tlv(SEQUENCE, tbs, ECDSA_WITH_SHA256, tlv(BIT_STRING, Uint8Array.of(0), sig))
}

function rdn (oid: Uint8Array, value: string): Uint8Array {
  return tlv(SEQUENCE, tlv(SET, tlv(SEQUENCE, tlv(OID, oid), tlv(UTF8_STRING, ascii(value)))))
}

/** An Extension; `critical` is written only when true (DER omits a DEFAULT FALSE). */
function extension (oid: Uint8Array, value: Uint8Array, critical = false): Uint8Array {
  const flag = critical ? [tlv(BOOLEAN, Uint8Array.of(0xff))] : []
  return tlv(SEQUENCE, tlv(OID, oid), ...flag, tlv(OCTET_STRING, value))
}
