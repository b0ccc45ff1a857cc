import { pino } from 'pino'
import { replacePathSecrets } from '../secrets/secret-shape.js'
import { pathWithoutQuery } from '../util/path.js'
import { AuditChain } from './trail/chain.js'

export { pathWithoutQuery }

/**
 * The one logger factory: pino JSON lines, `time` as ISO-8601, `msg` as the message key, no pid/hostname noise.
 *
 * What keeps secrets and injected bytes out of the log:
 * - redaction of the field names that can carry a credential (threat model: a log reader);
 * - URL-ish fields have secret query values replaced;
 * - control characters are escaped. pino's JSON encoding already escapes U+0000..U+001F (CR, LF, ESC, ...)
 *   through JSON.stringify; what JSON leaves raw and a terminal may still act on is DEL, the C1 controls
 *   (U+0080..U+009F, e.g. the 8-bit CSI U+009B), the line/paragraph separators and the bidi overrides
 *   ("Trojan Source"). Those are rewritten to a visible `\uXXXX`.
 *
 * @example
 *   const logger = createLogger({ level: 'info' })
 *   logger.info({ proxy: '127.0.0.1:4750' }, 'listening')
 *   await flushLogger(logger)
 */

export const REDACTED = '[REDACTED]'

/** Field paths whose values are replaced by [REDACTED] wherever they are logged. */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  'authorization', 'proxy_authorization', 'token', 'access_token', 'refresh_token', 'id_token', 'subject_token',
  'actor_token', 'client_secret', 'client_assertion', 'password', 'secret', 'cookie', 'api_key', 'private_key',
  'headers.*', 'req.headers.*', 'res.headers.*', 'request.headers.*', 'response.headers.*', 'err.headers.*',
  'params.client_secret', 'body.access_token', 'body.refresh_token', 'body.id_token', 'body.client_secret',
])

export interface LoggerOptions {
  /** pino level name: trace, debug, info, warn, error, fatal, silent. */
  level: string
  /** Where lines go; default stdout through an async (`sync: false`) pino.destination. */
  destination?: pino.DestinationStream | NodeJS.WritableStream
  /** For tests: write stdout synchronously. Ignored when `destination` is given. */
  sync?: boolean
  /**
   * Seal every line into a hash chain (`run_id`, `seq`, `chain`: trail/chain.ts); default true. Off only to
   * measure what the chain costs.
   */
  chain?: boolean
}

const CHAIN = Symbol('sidekey.auditChain')

/** The hash chain sealing this logger's lines (children share their parent's), or undefined when it has none. */
export function auditChainOf (logger: pino.Logger): AuditChain | undefined {
  return (logger as unknown as { [CHAIN]?: AuditChain })[CHAIN]
}

export function createLogger (opts: LoggerOptions): pino.Logger {
  const destination = opts.destination ?? pino.destination({ dest: 1, sync: opts.sync ?? false })
  const chain = opts.chain === false ? undefined : new AuditChain()
  const logger = pino({
    level: opts.level,
    base: undefined,
    messageKey: 'msg',
    timestamp: isoTime,
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    formatters: { log: sanitizeFields },
    hooks: {
      logMethod (args, method) {
        // The message string bypasses formatters.log; give it the same escaping.
        for (let i = 0; i < args.length; i++) {
          const a = args[i]
          if (typeof a === 'string' && UNSAFE.test(a)) args[i] = escapeControl(a)
        }
        method.apply(this, args as Parameters<typeof method>)
      },
      // The serialised line, sealed just before it is written: the cheapest place, and the bytes that are written.
      ...(chain === undefined ? {} : { streamWrite: chain.seal }),
    },
  }, destination as pino.DestinationStream)
  if (chain !== undefined) Object.defineProperty(logger, CHAIN, { value: chain })
  Object.defineProperty(logger, SINK, { value: { seal: chain?.seal } })
  return logger
}

const SINK = Symbol('sidekey.lineSink')
/** Marks a logger made here (its formatter, hooks and time known); the seal its lines get, if any. */
interface LineSink { readonly seal: ((line: string) => string) | undefined }

/** pino's info level; `{"level":30` opens each of its lines. */
const INFO = 30
/** The first segment of every redacted path: a line with such a field is left to pino's redaction. */
const REDACTED_KEYS: ReadonlySet<string> = new Set(REDACT_PATHS.map((path) => path.split('.')[0]!))

/**
 * Writes info lines of `logger` (made by createLogger, or a child of one) the way pino does, byte for byte, with one
 * JSON.stringify instead of pino's per-field serialiser: the audit line of every request, whose fields are fixed
 * and never redacted, costs about a third less. The same sanitising and the same seal apply. Returns false, having
 * written nothing, for a line it leaves to pino (a redacted field, a value JSON.stringify refuses); undefined for a
 * logger it cannot write for. One difference: a lone UTF-16 surrogate is written escaped, as pino does from Node 25.
 */
export function infoLineWriter (logger: pino.Logger): ((fields: object) => boolean) | undefined {
  const sink = (logger as unknown as { [SINK]?: LineSink })[SINK]
  const internals = logger as unknown as Record<symbol, unknown>
  const bindings = internals[pino.symbols.chindingsSym]
  const stream = internals[pino.symbols.streamSym] as { write (line: string): unknown } | undefined
  if (sink === undefined || typeof bindings !== 'string' || stream === undefined) return undefined
  if ((stream as unknown as Record<symbol, unknown>)[pino.symbols.needsMetadataGsym] === true) return undefined
  const seal = sink.seal
  return (fields) => {
    // Below the logger's level pino writes nothing either.
    if (logger.levelVal > INFO) return true
    for (const key in fields) if (REDACTED_KEYS.has(key)) return false
    let json: string
    try {
      json = JSON.stringify(fields)
      // What sanitizeFields rewrites is left raw by JSON.stringify (a control or bidi character) or sits in a query
      // (`?`): a line with neither, most lines, is sanitised as it is, without a walk over its fields.
      if (UNSAFE.test(json) || json.includes('?')) {
        const clean = sanitizeFields(fields as Record<string, unknown>)
        if (clean !== fields) json = JSON.stringify(clean)
      }
    } catch {
      return false
    }
    const line = `{"level":${INFO}${isoTime()}${bindings}${json.length === 2 ? '' : ',' + json.slice(1, -1)}}\n`
    stream.write(seal === undefined ? line : seal(line))
    return true
  }
}

let timeMs = NaN
let timeField = ''

/** pino's `isoTime` (`,"time":"…"`), formatted once per millisecond: a busy proxy writes several lines in one. */
function isoTime (): string {
  const now = Date.now()
  if (now !== timeMs) {
    timeMs = now
    timeField = `,"time":"${new Date(now).toISOString()}"`
  }
  return timeField
}

/**
 * Flushes what an async destination still buffers. Call before `process.exit()`; pino also flushes on a normal
 * exit by itself.
 *
 * sonic-boom with `minLength` 0 (pino's default) answers `flush(cb)` at once, even while a write is in flight and
 * more lines wait behind it; so when it is writing, wait for its `drain` (or `error`) as well.
 */
export function flushLogger (logger: pino.Logger): Promise<void> {
  // Only sonic-boom has `_writing`; any other destination (a test's memory stream) resolves at once.
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as InFlight | undefined
  return new Promise((resolve) => {
    try {
      logger.flush(() => {
        if (stream?._writing !== true) return resolve()
        const done = (): void => { stream.off('drain', done); stream.off('error', done); resolve() }
        stream.once('drain', done)
        stream.once('error', done)
      })
    } catch {
      // A sync or already-closed destination has nothing to flush.
      resolve()
    }
  })
}

/** What flushLogger reads of a sonic-boom destination: whether a write is in flight, and its events. */
interface InFlight {
  _writing: boolean
  once (event: 'drain' | 'error', listener: () => void): unknown
  off (event: 'drain' | 'error', listener: () => void): unknown
}

// Characters JSON leaves raw that terminals or log viewers may act on (see the module comment).

const UNSAFE = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

const UNSAFE_G = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
// \p{Cc} is U+0000-U+001F and U+007F-U+009F: every C0 and C1 control.
const ALL_CONTROL_G = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu

const hex4 = (c: string): string => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')

/** Rewrites the characters JSON leaves raw (DEL, C1, U+2028/9, bidi overrides) to a visible `\uXXXX`. */
export function escapeControl (value: string): string {
  return value.replace(UNSAFE_G, hex4)
}

/**
 * Rewrites every control character (C0 included) to a visible `\uXXXX`: for text that is not JSON-encoded
 * afterwards, such as the human `sidekey audit` table.
 */
export function escapeAllControl (value: string): string {
  return value.replace(ALL_CONTROL_G, hex4)
}

/** Keys whose string values are URLs or request targets: their secret query values are redacted. */
const URL_KEYS = new Set([
  'url', 'uri', 'href', 'location', 'target', 'path', 'token_url', 'redirect', 'referer', 'referrer',
])

const MAX_DEPTH = 4

/**
 * pino `formatters.log`: returns the object itself when nothing needs changing (the common case, no allocation),
 * else a shallow copy with the offending strings rewritten.
 */
function sanitizeFields (obj: Record<string, unknown>): Record<string, unknown> {
  return sanitizeObject(obj, 0)
}

function sanitizeObject (obj: Record<string, unknown>, depth: number): Record<string, unknown> {
  let out: Record<string, unknown> | undefined
  for (const key in obj) {
    if (!Object.prototype.hasOwnProperty.call(obj, key)) continue
    const value = obj[key]
    const clean = sanitizeValue(key, value, depth)
    if (clean !== value) {
      out ??= { ...obj }
      out[key] = clean
    }
  }
  return out ?? obj
}

function sanitizeValue (key: string, value: unknown, depth: number): unknown {
  if (typeof value === 'string') {
    let s = value
    if (URL_KEYS.has(key) && s.includes('?')) s = redactQuery(s)
    if (UNSAFE.test(s)) s = escapeControl(s)
    return s
  }
  if (value === null || typeof value !== 'object' || depth >= MAX_DEPTH) return value
  if (value instanceof Error) return value
  if (Array.isArray(value)) {
    let out: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const clean = sanitizeValue(key, value[i], depth + 1)
      if (clean !== value[i]) {
        out ??= value.slice()
        out[i] = clean
      }
    }
    return out ?? value
  }
  const proto = Object.getPrototypeOf(value)
  // Only plain objects: a class instance (Secret, Date, Buffer) serialises itself.
  if (proto !== Object.prototype && proto !== null) return value
  return sanitizeObject(value as Record<string, unknown>, depth + 1)
}

/** Query parameter names whose values are credentials (compared case-insensitively). */
export const SECRET_QUERY_PARAMS: ReadonlySet<string> = new Set([
  'access_token', 'token', 'key', 'api_key', 'apikey', 'api-key', 'code', 'client_secret', 'password', 'sig',
  'signature', 'id_token', 'refresh_token', 'secret', 'auth', 'x-amz-signature', 'x-amz-credential',
  'x-amz-security-token', 'x-goog-signature', 'x-goog-credential',
])

/**
 * Redacts the values of credential-carrying query parameters in a URL or request target, keeping everything else
 * byte for byte (so the line still tells what was called).
 *
 * @example
 *   redactQuery('/v1/x?key=abc&q=1#f') === '/v1/x?key=[REDACTED]&q=1#f'
 */
export function redactQuery (pathWithQuery: string): string {
  const q = pathWithQuery.indexOf('?')
  if (q === -1) return pathWithQuery
  const hash = pathWithQuery.indexOf('#', q)
  const end = hash === -1 ? pathWithQuery.length : hash
  const query = pathWithQuery.slice(q + 1, end)
  if (query === '') return pathWithQuery
  const parts = query.split('&')
  let changed = false
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!
    const eq = part.indexOf('=')
    const rawName = eq === -1 ? part : part.slice(0, eq)
    if (eq === -1 || eq === part.length - 1) continue
    if (SECRET_QUERY_PARAMS.has(decodeName(rawName))) {
      parts[i] = rawName + '=' + REDACTED
      changed = true
    }
  }
  if (!changed) return pathWithQuery
  return pathWithQuery.slice(0, q + 1) + parts.join('&') + pathWithQuery.slice(end)
}

function decodeName (raw: string): string {
  let name = raw.replace(/\+/g, ' ')
  try { name = decodeURIComponent(name) } catch { /* keep the raw form */ }
  return name.trim().toLowerCase()
}

/**
 * A path as the audit log keeps it: no query or fragment, and any segment that looks like a credential (a key with
 * a known prefix, a JWT, a bot token or Slack-webhook secret placed in the path, a long random token) replaced by
 * `<redacted:kind>` (docs/threat-model.md, "A log reader"). Names, versions, numbers, hex ids and UUIDs stay.
 *
 * @example
 *   auditPath('/bot123456:AAE.../sendMessage?x=1') === '/<redacted:telegram_bot>/sendMessage'
 */
export function auditPath (pathWithQuery: string): string {
  return replacePathSecrets(pathWithoutQuery(pathWithQuery), redactedAs)
}

const redactedAs = (kind: string): string => `<redacted:${kind}>`
