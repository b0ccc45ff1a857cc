import { looksLikeSecret, secretKind } from '../secrets/secret-shape.js'

/** How much of a held body the approver reads: enough for a message's recipient and first lines. */
export const PREVIEW_BYTES = 512

/** Runs of token characters long enough to be a key, a JWT or a bearer token. */
const TOKEN_RUN = /[A-Za-z0-9._~+/=:-]{16,}/g

/**
 * The start of a held body as text for the approver, with every run that looks like a credential replaced by
 * `<redacted:kind>`: the agent sends placeholders, but the approval event and webhook must never carry a secret
 * it put in a body anyway (docs/threat-model.md, "A log reader").
 */
export function previewOf (body: Buffer, limit = PREVIEW_BYTES): string {
  const text = body.subarray(0, limit).toString('utf8').replace(/\uFFFD+$/, '')
  const cut = body.length > limit ? '…' : ''
  return text.replace(TOKEN_RUN, (run) => looksLikeSecret(run) ? `<redacted:${secretKind(run)}>` : run) + cut
}
