import { rootCertificates } from 'node:tls'
import { SidekeyError } from '../errors.js'
import { writeFileAtomic } from './atomic-write.js'

/**
 * Node's bundled Mozilla roots plus sidekey's CA, for clients that can only replace their trust store, not add
 * to it (e.g. `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, `curl --cacert`). `sidekey ca --bundle OUT` writes it.
 */
export function caBundle (caPem: string): string {
  return [...rootCertificates, caPem.trim()].join('\n') + '\n'
}

/** Writes caBundle(caPem) to `out` atomically, mode 0644 (it holds only public certificates). */
export async function writeCaBundle (out: string, caPem: string): Promise<void> {
  try {
    await writeFileAtomic(out, caBundle(caPem), 0o644)
  } catch (err) {
    throw new SidekeyError('SIDEKEY_CA_FAILED', `cannot write CA bundle ${out} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err })
  }
}
