import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { rootCertificates } from 'node:tls'
import { SidekeyError } from '../errors.js'
import { writeFileAtomic } from '../util/atomic-write.js'

/**
 * Where systems keep the roots they trust as one PEM file, most common first (Debian/Ubuntu/Alpine, Fedora/RHEL,
 * openSUSE, OpenELEC, CentOS/RHEL 7, macOS/FreeBSD): the list Go's crypto/x509 reads. `SSL_CERT_FILE`, which
 * OpenSSL honours, is read before them.
 */
export const SYSTEM_ROOT_FILES: readonly string[] = Object.freeze([
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/tls/cacert.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
])

/** The roots a bundle starts from, and where they came from (a file, or `node` for Node's built-in Mozilla list). */
export interface Roots { readonly pems: readonly string[], readonly source: string }

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/**
 * The machine's trusted roots: the first readable system file holding certificates (so roots an operator added,
 * e.g. a corporate proxy's via update-ca-certificates, are kept), else Node's built-in Mozilla list. A sidekey
 * CA found there (a bundle written earlier) is left out: a rotated CA must not stay trusted through the bundle.
 */
export async function systemRoots (env: NodeJS.ProcessEnv = process.env): Promise<Roots> {
  const custom = env.SSL_CERT_FILE === undefined || env.SSL_CERT_FILE === '' ? [] : [env.SSL_CERT_FILE]
  const files = [...custom, ...SYSTEM_ROOT_FILES]
  for (const file of files) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch {
      continue
    }
    const pems = [...new Set(text.match(PEM_CERT) ?? [])].filter((pem) => !isSidekeyCa(pem))
    if (pems.length > 0) return { pems, source: file }
  }
  return { pems: rootCertificates, source: 'node' }
}

function isSidekeyCa (pem: string): boolean {
  try {
    return /^CN=sidekey root CA [0-9a-f]+\nO=sidekey$/.test(new X509Certificate(pem).subject)
  } catch {
    return false
  }
}

/**
 * `roots` (Node's bundled Mozilla list by default) plus sidekey's CA, for clients that can only replace their
 * trust store, not add to it (e.g. `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, `curl --cacert`).
 */
export function caBundle (caPem: string, roots: readonly string[] = rootCertificates): string {
  return [...roots.map((r) => r.trim()), caPem.trim()].join('\n') + '\n'
}

/**
 * `sidekey ca --bundle OUT`: writes the system roots plus the CA to `out` atomically, mode 0644 (only public
 * certificates). Resolves with the absolute path written and where the roots came from.
 */
export async function writeCaBundle (
  out: string, caPem: string, env: NodeJS.ProcessEnv = process.env
): Promise<{ path: string, source: string }> {
  const roots = await systemRoots(env)
  const path = resolve(out)
  try {
    await writeFileAtomic(path, caBundle(caPem, roots.pems), 0o644)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new SidekeyError('SIDEKEY_CA_FAILED', `cannot write CA bundle ${out} (${code})`, { cause: err })
  }
  return { path, source: roots.source }
}
