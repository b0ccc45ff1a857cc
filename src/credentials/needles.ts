import type { Credential } from './provider.js'
import { awsKeySet } from './aws-keys.js'

/**
 * The values of a credential that must never reach the agent, for response scrubbing to look for. A token
 * (bearer or DPoP-bound) is itself; an AWS key set is its secret, its session token, and its access key id —
 * not a secret, but it names the real key, which the agent only ever knows by its placeholder.
 *
 * @example
 *   for (const needle of credentialNeedles(credential)) scrubber.add(needle)
 */
export function credentialNeedles (credential: Pick<Credential, 'token' | 'kind'>): string[] {
  const keys = credential.kind === 'aws_keys' ? awsKeySet(credential.token) : undefined
  if (keys === undefined) return [credential.token.reveal()]
  return [keys.secretAccessKey, keys.accessKeyId, ...(keys.sessionToken === undefined ? [] : [keys.sessionToken])]
}
