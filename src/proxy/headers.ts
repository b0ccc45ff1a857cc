import type { PlaceholderState } from '../audit/events.js'
import { looksLikeSecret } from '../secrets/secret-shape.js'
import { SidekeyError } from '../errors.js'
import type { Tool } from './router.js'

/** The agent's task id for this call: sidekey's own header, audited and never forwarded. */
export const TASK_HEADER = 'x-sidekey-task'
/** An opaque id: at most 128 characters, none that could break a log line, a JWT claim or a shell. */
const TASK_ID = /^[A-Za-z0-9._~:/@+=-]{1,128}$/

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones a proxy must never pass on. `host` is rebuilt from the
 * URL authority, `expect` is answered by sidekey itself, and framing (content-length / transfer-encoding) is
 * regenerated for the upstream: never the agent's (threat model: the agent, smuggling). X-Sidekey-Task is
 * sidekey's own.
 */
const HOP_BY_HOP = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect', 'http2-settings', 'content-length', TASK_HEADER,
])

/**
 * Method-override headers: servers that honour them would run another method than the one `match.methods` judged.
 * Stripped unless the tool sets `allow_method_override`, and then checked like the method (methods.ts).
 */
export const METHOD_OVERRIDE: ReadonlySet<string> =
  new Set(['x-http-method-override', 'x-http-method', 'x-method-override'])

/** Response headers that must not be relayed to the agent as they came. */
const RESPONSE_HOP_BY_HOP = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
])

/**
 * Validates the agent's raw header list in one pass: refuses a second Host and header names with
 * underscores (Envoy's REJECT_REQUEST), which some upstreams would read as dashes. Returns the task id the
 * agent sent in X-Sidekey-Task; a malformed or repeated one is refused (reason `bad_task`).
 */
export function checkRequestHeaders (raw: readonly string[]): string | undefined {
  let host = false
  let task: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.includes('_')) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'header names with underscores are refused')
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (host) throw new SidekeyError('SIDEKEY_BAD_REQUEST', 'more than one Host header')
      host = true
    } else if (name.length === TASK_HEADER.length && name.toLowerCase() === TASK_HEADER) {
      const value = raw[i + 1]!
      if (task !== undefined || !TASK_ID.test(value)) {
        throw new SidekeyError('SIDEKEY_BAD_REQUEST',
          'X-Sidekey-Task must be sent once, 1 to 128 characters of A-Z a-z 0-9 . _ ~ : / @ + = -',
          { details: { reason: 'bad_task' } })
      }
      task = value
    }
  }
  return task
}

export interface UpstreamHeaders {
  /** Flat [name, value, name, value, ...] as undici takes them. */
  headers: string[]
  placeholder: PlaceholderState
}

/**
 * Builds the upstream header list: drops hop-by-hop headers, the names `Connection` lists, and the tool's strip
 * list — all *before* injection, so a client naming the injected header in `Connection` cannot remove the
 * credential (threat model: the agent, credential scope) — then sets Host to the authority. Method-override
 * headers go unless the tool allows them; a tool whose bodies are scrubbed asks for `accept-encoding: identity`,
 * as a compressed body cannot be scrubbed as text. Injection happens in inject.ts.
 */
export function upstreamHeaders (raw: readonly string[], tool: Tool | undefined, authority: string): UpstreamHeaders {
  let connectionListed: Set<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      connectionListed ??= new Set()
      for (const token of raw[i + 1]!.split(',')) {
        const t = token.trim().toLowerCase()
        if (t !== '') connectionListed.add(t)
      }
    }
  }
  const headers: string[] = ['host', authority]
  let stripped: string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower)) continue
    if (tool !== undefined) {
      if (tool.stripSet.has(lower)) {
        (stripped ??= []).push(raw[i + 1]!)
        continue
      }
      if (METHOD_OVERRIDE.has(lower) && !tool.config.allow_method_override) continue
      if (tool.config.scrub_body === true && lower === 'accept-encoding') continue
    }
    if (connectionListed?.has(lower) === true) continue
    headers.push(name, raw[i + 1]!)
  }
  if (tool?.config.scrub_body === true) headers.push('accept-encoding', 'identity')
  const placeholder = tool === undefined ? 'absent' : classifyPlaceholder(stripped, tool.config.placeholder)
  return { headers, placeholder }
}

/**
 * Whether what the agent sent where the credential goes was the configured placeholder, nothing, or something else.
 * `partsOf` says where the credential sits in a value: after an auth scheme in a header (the default), or the
 * whole value (wholeValue) for a query parameter or an access key id, where `STOLEN sidekey` is not the placeholder.
 */
export function classifyPlaceholder (values: readonly string[] | undefined, placeholder: string | undefined,
  partsOf: (value: string) => string[] = credentialPart): PlaceholderState {
  if (values === undefined || values.length === 0) return 'absent'
  for (const value of values) {
    const credential = partsOf(value)
    const unexpected = placeholder !== undefined ? !credential.includes(placeholder) : credential.some(looksLikeSecret)
    if (unexpected) return 'unexpected'
  }
  return 'stripped'
}

/** A value that is the credential itself, nothing around it. */
export const wholeValue = (value: string): string[] => [value]

/** `Bearer x` → [x]; `Basic base64(u:p)` → [u, p]; anything else → [value]. */
function credentialPart (value: string): string[] {
  const v = value.trim()
  const space = v.indexOf(' ')
  if (space < 0) return [v]
  const scheme = v.slice(0, space).toLowerCase()
  const rest = v.slice(space + 1).trim()
  if (scheme === 'basic') {
    const decoded = Buffer.from(rest, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    return colon < 0 ? [decoded] : [decoded.slice(0, colon), decoded.slice(colon + 1)]
  }
  return [rest]
}

/**
 * The value of one field in a flat header list with lowercase names (repeated fields joined with `,`), or undefined.
 */
export function fieldValue (flat: readonly string[], name: string): string | undefined {
  let value: string | undefined
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i] === name) value = value === undefined ? flat[i + 1]! : `${value},${flat[i + 1]!}`
  }
  return value
}

/**
 * Response headers for the agent from the upstream's flat list (names lowercase): hop-by-hop fields and the names
 * `Connection` lists removed, the rest in the upstream's order, as a flat list for `res.writeHead`.
 */
export function downstreamHeaders (flat: readonly string[]): string[] {
  let connectionListed: string[] | undefined
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i] !== 'connection') continue
    for (const token of flat[i + 1]!.split(',')) (connectionListed ??= []).push(token.trim().toLowerCase())
  }
  const out: string[] = []
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!
    if (RESPONSE_HOP_BY_HOP.has(name)) continue
    if (connectionListed?.includes(name) === true) continue
    out.push(name, flat[i + 1]!)
  }
  return out
}
