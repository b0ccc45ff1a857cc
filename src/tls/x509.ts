/**
 * The one place @peculiar/x509 is set up: it needs reflect-metadata loaded first and a WebCrypto provider.
 * Setting the provider is process-wide inside that library; it is idempotent (always node's webcrypto).
 * Imported only dynamically, by ca.ts when it creates a CA: together these packages hold ≈ 23 MB of RSS that a
 * start with an existing CA does not need.
 */
import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

/** The WebCrypto type @peculiar/x509 expects (the DOM `Crypto`, which this project's lib settings do not load). */
type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0]

x509.cryptoProvider.set(webcrypto as unknown as X509Crypto)

export { x509 }
