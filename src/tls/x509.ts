/**
 * The one place @peculiar/x509 is set up: it needs reflect-metadata loaded first and a WebCrypto provider.
 * Setting the provider is process-wide inside that library; it is idempotent (always node's webcrypto).
 */
import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

/** The WebCrypto type @peculiar/x509 expects (the DOM `Crypto`, which this project's lib settings do not load). */
type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0]

x509.cryptoProvider.set(webcrypto as unknown as X509Crypto)

export { x509 }
export const subtle = webcrypto.subtle
export type CryptoKey = webcrypto.CryptoKey
