import type { IncomingHttpHeaders } from 'node:http'
import { JsonSyntaxError, parseStrictJson } from './json.js'
import { decodeHeaderName, headerValue } from './headers.js'
import { LIST_METHODS, NAMED_METHODS, type McpKind, type McpPolicy } from './policy.js'
import {
  badRequest, denied, deniedAnswer, HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, notSentAnswer, PARSE_ERROR,
  type McpRefusal,
} from './refusal.js'

/** What the audit line says of an MCP request: its JSON-RPC method and the name it acts on; a batch, per member. */
export interface McpCall {
  readonly method: string
  readonly name?: string
  readonly batch?: readonly McpCall[]
}

/** A list request in the body whose answer is filtered (the policy restricts its kind). */
export interface ListRequest {
  /** The JSON-RPC id, as JSON, to find its answer by. */
  readonly id: string
  readonly kind: McpKind
  readonly field: 'name' | 'uri'
}

export interface McpCheck {
  readonly call?: McpCall
  readonly refusal?: McpRefusal
  readonly lists: readonly ListRequest[]
}

type Message = Record<string, unknown>
type Id = string | number | null

/** Methods whose Mcp-Name header mirrors a member of `params` (SEP-2243). */
const NAME_SOURCES: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'resources/subscribe': 'uri',
  'resources/unsubscribe': 'uri',
}

/**
 * Judges one POSTed JSON-RPC body against a tool's MCP policy before any credential goes on it. The bytes judged
 * are the bytes sent upstream: a body another parser could read differently (repeated members, invalid UTF-8, a
 * lone surrogate) is refused as malformed, as is a SEP-2243 `Mcp-Method` / `Mcp-Name` header that disagrees with
 * it. A batch with any refused member is refused whole (each refused member answered with its refusal, the others
 * as not sent): forwarding part of a batch would need sidekey to merge two answers.
 */
export function checkMcpRequest (policy: McpPolicy, headers: IncomingHttpHeaders, body: Buffer): McpCheck {
  let parsed: unknown
  try {
    parsed = parseStrictJson(body)
  } catch (err) {
    const why = err instanceof JsonSyntaxError ? err.message : 'unreadable'
    const refusal = badRequest(PARSE_ERROR, `the MCP request body is not strict JSON (${why})`, 'mcp_malformed')
    return { refusal, lists: [] }
  }
  const batch = Array.isArray(parsed)
  const members: unknown[] = Array.isArray(parsed) ? parsed : [parsed]
  if (members.length === 0 || !members.every(isMessage)) {
    return { refusal: badRequest(INVALID_REQUEST, 'not a JSON-RPC message or batch', 'mcp_malformed'), lists: [] }
  }
  const messages = members as Message[]
  const calls: McpCall[] = []
  for (const m of messages) {
    const call = callOf(m)
    if (typeof call === 'string') return { refusal: badRequest(INVALID_PARAMS, call, 'mcp_malformed'), lists: [] }
    if (call !== undefined) calls.push(call)
  }
  const call: McpCall | undefined = batch ? { method: 'batch', batch: calls } : calls[0]
  const mismatch = headerMismatch(headers, batch ? undefined : messages[0])
  if (mismatch !== undefined) {
    return { call, refusal: badRequest(HEADER_MISMATCH, mismatch, 'mcp_header_mismatch'), lists: [] }
  }
  const refused = messages.map((m) => isRefused(policy, m))
  if (refused.some((r) => r)) {
    const answers = messages.flatMap((m, i) => {
      if (refused[i] === true) return [deniedAnswer(idOf(m), callOf(m) as McpCall)]
      return 'id' in m ? [notSentAnswer(idOf(m))] : []
    })
    return { call, refusal: denied(batch ? answers : answers[0]!), lists: [] }
  }
  return { call, lists: messages.flatMap((m) => listRequest(policy, m)) }
}

function isMessage (m: unknown): m is Message {
  return typeof m === 'object' && m !== null && !Array.isArray(m)
}

function idOf (m: Message): Id {
  const id = m.id
  return typeof id === 'string' || typeof id === 'number' ? id : null
}

/** The call a message makes (undefined for an answer to the server), or why it cannot be judged. */
function callOf (m: Message): McpCall | string | undefined {
  if (!('method' in m)) return undefined
  if (typeof m.method !== 'string') return 'a JSON-RPC method must be a string'
  const named = NAMED_METHODS[m.method]
  if (named === undefined) return { method: m.method }
  const params = m.params
  const name = isMessage(params) ? params[named.field] : undefined
  if (typeof name !== 'string') return `${m.method} needs params.${named.field} as a string`
  return { method: m.method, name }
}

function isRefused (policy: McpPolicy, m: Message): boolean {
  const call = callOf(m)
  if (call === undefined || typeof call === 'string' || call.name === undefined) return false
  const allowed = policy[NAMED_METHODS[call.method]!.kind]
  return allowed !== undefined && !allowed.allows(call.name)
}

function listRequest (policy: McpPolicy, m: Message): ListRequest[] {
  const list = typeof m.method === 'string' ? LIST_METHODS[m.method] : undefined
  if (list === undefined || policy[list.kind] === undefined || !('id' in m)) return []
  return [{ id: JSON.stringify(m.id), kind: list.kind, field: list.field }]
}

/**
 * SEP-2243: a client may say the method and name in headers, for intermediaries that route on them; sidekey judges
 * the body, so a header saying anything else is refused (the server might act on either). Absent headers are fine.
 */
function headerMismatch (headers: IncomingHttpHeaders, single: Message | undefined): string | undefined {
  const method = headerValue(headers['mcp-method'])
  const nameHeader = headerValue(headers['mcp-name'])
  if (method === undefined && nameHeader === undefined) return undefined
  if (single === undefined) return 'Mcp-Method and Mcp-Name cannot describe a batch'
  const bodyMethod = typeof single.method === 'string' ? single.method : undefined
  if (method !== undefined && method !== bodyMethod) return 'the Mcp-Method header disagrees with the body\'s method'
  if (nameHeader === undefined) return undefined
  const name = decodeHeaderName(nameHeader)
  if (name === undefined) return 'the Mcp-Name header is not valid =?base64?...?= UTF-8'
  const source = bodyMethod === undefined ? undefined : NAME_SOURCES[bodyMethod]
  const params = single.params
  const bodyName = source !== undefined && isMessage(params) ? params[source] : undefined
  if (name !== bodyName) return 'the Mcp-Name header disagrees with the body\'s params'
  return undefined
}
