/**
 * Does a value look like a real credential rather than a placeholder? The request path asks this of a stripped
 * header when the tool sets no `placeholder`, to raise `unexpected_credential`.
 * Tuned to stay quiet on placeholders people write (`sidekey`, `dummy-token-for-testing`, `changeme`): a value
 * is a secret when it has a known key prefix, the shape of a JWT, or is a long, mixed, high-entropy token.
 *
 * @example
 *   looksLikeSecret('Bearer sk-proj-3f9a...')  // true
 *   looksLikeSecret('sidekey')                  // false
 */

/** Known key prefixes and the least number of characters that follow them in a real key. */
const PREFIXES: ReadonlyArray<readonly [string, number]> = [
  ['sk-ant-', 20], ['sk-', 16], ['rk_live_', 16], ['sk_live_', 16], ['sk_test_', 16], ['pk_live_', 16],
  ['ghp_', 20], ['gho_', 20], ['ghs_', 20], ['ghu_', 20], ['ghr_', 20], ['github_pat_', 20],
  ['xoxb-', 10], ['xoxp-', 10], ['xoxa-', 10], ['xoxs-', 10], ['xapp-', 10],
  ['glpat-', 16], ['AIza', 30], ['hf_', 20], ['npm_', 20], ['pypi-', 20],
]
const AWS_KEY_ID = /^(?:AKIA|ASIA)[0-9A-Z]{16}$/
const JWT = /^eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*$/
const TOKEN_CHARS = /^[A-Za-z0-9+/=_\-.~]+$/
const AUTH_SCHEME = /^(?:bearer|token|bot|apikey|api-key|sso-key)\s+/i
const BASIC = /^basic\s+/i
const HEX = /^[0-9a-fA-F]+$/
const MIN_ENTROPY_LENGTH = 20
const MAX_LENGTH = 16384

export function looksLikeSecret (value: string): boolean {
  let v = value.trim()
  // Longer than any header sidekey accepts: not worth scanning.
  if (v.length === 0 || v.length > MAX_LENGTH) return false
  if (BASIC.test(v)) return basicLooksReal(v.replace(BASIC, ''))
  v = v.replace(AUTH_SCHEME, '')
  for (const [prefix, rest] of PREFIXES) {
    if (v.startsWith(prefix) && v.length - prefix.length >= rest && TOKEN_CHARS.test(v)) return true
  }
  if (AWS_KEY_ID.test(v) || JWT.test(v) || TELEGRAM_BOT.test(v)) return true
  return highEntropy(v)
}

const TELEGRAM_BOT = /^bot\d{5,}:[A-Za-z0-9_-]{30,}$/
/** Cheap pre-check: no known secret can be in a string without one of these. */
const KNOWN_HINT = /sk-|[srp]k_|gh[pousr]_|github_pat_|xox[bpas]-|xapp-|glpat-|AIza|hf_|npm_|pypi-|AKIA|ASIA|eyJ|bot\d/

/**
 * What kind of credential a value is, by its known prefix (`sk-ant-`, `ghp_`, `AKIA`, …), `jwt`, `telegram_bot`, or
 * `opaque`: all that inventory mode records of a value.
 */
export function secretKind (value: string): string {
  if (KNOWN_HINT.test(value)) {
    for (const [prefix, rest] of PREFIXES) {
      if (value.startsWith(prefix) && value.length - prefix.length >= rest && TOKEN_CHARS.test(value)) return prefix
    }
    if (AWS_KEY_ID.test(value)) return value.slice(0, 4)
    if (JWT.test(value)) return 'jwt'
    if (TELEGRAM_BOT.test(value)) return 'telegram_bot'
  }
  return 'opaque'
}

/** Basic credentials: the password half decides. */
function basicLooksReal (b64: string): boolean {
  let decoded: string
  try { decoded = Buffer.from(b64.trim(), 'base64').toString('utf8') } catch { return false }
  const colon = decoded.indexOf(':')
  return colon !== -1 && looksLikeSecret(decoded.slice(colon + 1))
}

/** Long, one token, letters and digits mixed, and a character distribution far from a word. */
function highEntropy (v: string): boolean {
  if (v.length < MIN_ENTROPY_LENGTH || !TOKEN_CHARS.test(v)) return false
  if (!/[0-9]/.test(v) || !/[A-Za-z]/.test(v)) return false
  // Hex draws from 16 symbols only, so its entropy ceiling is 4 bits: a lower bar.
  return shannonEntropy(v) >= (HEX.test(v) ? 3.0 : 3.5)
}

/** Bits per character. */
export function shannonEntropy (s: string): number {
  if (s.length === 0) return 0
  const counts = new Map<string, number>()
  for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1)
  let h = 0
  for (const n of counts.values()) {
    const p = n / s.length
    h -= p * Math.log2(p)
  }
  return h
}

/**
 * `path` with each segment that looks like a credential replaced by `replace(kind)` (kinds: segmentSecretKind); the
 * same string when there is none. What the audit keeps of a path (log.ts auditPath) and what path shapes fold.
 */
export function replacePathSecrets (path: string, replace: (kind: string) => string): string {
  // Every shape below is at least 15 characters long (`xoxb-` and 10).
  if (!LONG_SEGMENT.test(path)) return path
  const segments = path.split('/')
  let out: string[] | undefined
  for (let i = 0; i < segments.length; i++) {
    const kind = segmentSecretKind(segments, i)
    if (kind !== undefined) (out ??= segments.slice())[i] = replace(kind)
  }
  return out === undefined ? path : out.join('/')
}

const LONG_SEGMENT = /[^/]{15,}/
const SLACK_TEAM = /^T[A-Z0-9]{6,}$/
const SLACK_BOT = /^B[A-Z0-9]{6,}$/
const SLACK_SECRET = /^[A-Za-z0-9]{24,}$/

/**
 * What kind of credential `segments[i]` of a `/`-split path is, or undefined for an ordinary segment: a known format
 * (as secretKind names it), the secret of a Slack incoming webhook (`/services/T…/B…/<secret>`, known by the
 * segments before it), or `high_entropy`. Percent-escapes are decoded first.
 */
export function segmentSecretKind (segments: readonly string[], i: number): string | undefined {
  const raw = segments[i]!
  if (raw.length < 15) return undefined
  const segment = raw.includes('%') ? percentDecoded(raw) : raw
  if (i >= 3 && segments[i - 3] === 'services' && SLACK_TEAM.test(segments[i - 2]!) &&
    SLACK_BOT.test(segments[i - 1]!) && SLACK_SECRET.test(segment)) return 'slack_webhook'
  const kind = secretKind(segment)
  if (kind !== 'opaque') return kind
  return highEntropySegment(segment) ? 'high_entropy' : undefined
}

function percentDecoded (s: string): string {
  try { return decodeURIComponent(s) } catch { return s }
}

/** An id of hex digits after a short upper-case type prefix (Twilio's `AC…`, `SM…`): an id, not a secret. */
const PREFIXED_HEX = /^[A-Z]{1,4}[0-9a-f]{16,}$/
const LOWER = /[a-z]/
const UPPER = /[A-Z]/
/** camelCase words and numbers: `ListObjectsV2`, `Invoice2024`, `MY_BUCKET`. */
const CHUNK = /[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+/g

/**
 * A random token in a path, told from names, versions and ids that a reader needs to see. All of: 20+ token
 * characters; lower case, upper case and digits (so hex digests, commit ids and UUIDs, which lack one, stay);
 * 3.5+ bits per character; and no words: a random token changes between upper case, lower case and digits every
 * 1-2 characters, a name like `ListObjectsV2ForBucket` every 3 or more.
 * About 0.3 % of random 40-character base62 tokens lack a class or read as words, 4 % at 20 characters.
 */
function highEntropySegment (s: string): boolean {
  if (s.length < MIN_ENTROPY_LENGTH || !TOKEN_CHARS.test(s)) return false
  if (!LOWER.test(s) || !UPPER.test(s) || !/[0-9]/.test(s) || PREFIXED_HEX.test(s)) return false
  if (shannonEntropy(s) < 3.5) return false
  let chunks = 0
  let chars = 0
  for (const m of s.matchAll(CHUNK)) {
    chunks++
    chars += m[0].length
  }
  return chars / chunks < 3
}
