import type { CarriedCredential } from '../audit/events.js'
import { carriedCredentials } from './carried.js'
import { loadOrCreateFingerprintKey } from './key.js'

/**
 * Inventory mode (`egress.unmatched: inventory`): what the request path asks of a call to a destination no tool
 * covers. Loaded only when the mode is on.
 */
export interface Inventory {
  /** Names the fingerprint key (not the key). */
  readonly keyId: string
  /** Where the request carries credentials: kinds and fingerprints, never values. */
  carried (rawHeaders: readonly string[], pathAndQuery: string): CarriedCredential[]
}

export async function createInventory (caDir: string): Promise<Inventory> {
  const key = await loadOrCreateFingerprintKey(caDir)
  return { keyId: key.id, carried: (raw, path) => carriedCredentials(raw, path, key) }
}
