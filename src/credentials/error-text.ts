import { IssuerError, SidekeyError } from '../errors.js'

/**
 * The text of a failed issuer call as the audit trail and status show it: a SidekeyError's own message, or a
 * foreign error's message with anything that looks like a credential redacted.
 */

const ERROR_TEXT_MAX = 300
const REDACTED = '[REDACTED]'

/** `name: value` and `name=value` pairs whose name says the value is secret: the value is redacted. */
const SECRET_FIELD =
  /((?:token|secret|password|passwd|assertion|key|code|authorization|cookie)["']?\s*[:=]\s*["']?)[^\s"'&,;]+/gi

/**
 * Drops what looks like a credential from a foreign error message: known tokens, `Bearer x`, `token=x`-style pairs
 * and long base64/JWT-like runs; strips control characters and bounds the length.
 */
export function sanitizeErrorText (text: string, secrets: readonly string[] = []): string {
  const out = scrubKnown(text, secrets)
    .replace(/\b(bearer|basic)\s+\S+/gi, `$1 ${REDACTED}`)
    .replace(SECRET_FIELD, `$1${REDACTED}`)
    .replace(/[A-Za-z0-9+/_=.~-]{20,}/g, REDACTED)
  return bound(out)
}

/** Known tokens and control characters only: for our own error messages, which carry no secret by contract. */
function scrubKnown (text: string, secrets: readonly string[]): string {
  let out = text
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join(REDACTED)
  return out.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ')
}

function bound (text: string): string {
  return text.length > ERROR_TEXT_MAX ? `${text.slice(0, ERROR_TEXT_MAX)}…` : text
}

/** `CODE: message` for a SidekeyError, a sanitised text under SIDEKEY_ISSUER_FAILED for any other error. */
export function describeError (err: unknown, secrets: readonly string[] = []): string {
  if (err instanceof SidekeyError) return bound(scrubKnown(`${err.code}: ${err.message}`, secrets))
  return `SIDEKEY_ISSUER_FAILED: ${foreignText(err, secrets)}`
}

function foreignText (err: unknown, secrets: readonly string[]): string {
  if (!(err instanceof Error)) return 'issuer call failed'
  const code = errnoCode(err) ?? errnoCode(err.cause)
  const message = sanitizeErrorText(err.message, secrets).trim()
  const text = message === '' ? `issuer call failed (${err.name})` : message
  return code === undefined ? text : `${text} (${code})`
}

function errnoCode (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code) ? code : undefined
}

export function asSidekeyError (err: unknown, secrets: readonly string[]): SidekeyError {
  if (err instanceof SidekeyError) return err
  return new IssuerError('SIDEKEY_ISSUER_FAILED', foreignText(err, secrets))
}
