import type { Credential } from '../../credentials/provider.js'
import { awsKeySet } from '../../credentials/aws-keys.js'
import { credentialNeedles } from '../../credentials/needles.js'
import { SidekeyError } from '../../errors.js'
import type { Tool } from '../router.js'
import { basicNeedles, Scrubber, tokenNeedles, type Needle } from '../scrub/scrub.js'

/** What the agent sees where the credential came back, for a tool without its own `placeholder`. */
export const DEFAULT_PLACEHOLDER = 'sidekey'

/** What a signing injection (aws_sigv4) needs of the request besides its headers and path. */
export interface InjectRequest {
  readonly method: string
  /** `https://host[:port]` of the upstream: with the path, the URL a DPoP proof is made for. */
  readonly origin: string
  /** The agent's own Authorization (stripped from `headers` already). */
  readonly agentAuthorization: string | undefined
  readonly body: Buffer | undefined
  readonly streamed: boolean
  readonly contentLength: string | undefined
  readonly bodyLimit: number
}

let sigv4: Promise<typeof import('./aws-sigv4.js')> | undefined

/**
 * Attaches the credential to the upstream request: the one place a secret is revealed.
 * Returns the path to send (changed only for query injection); a promise for the injections that sign.
 */
export function inject (
  tool: Tool, credential: Credential, headers: string[], pathAndQuery: string, request: InjectRequest
): string | Promise<string> {
  const spec = tool.config.inject
  if (spec.aws_sigv4 !== undefined) return injectSigV4(tool, spec.aws_sigv4, credential, headers, pathAndQuery, request)
  if (credential.kind === 'aws_keys') throw notThisShape(tool, 'holds AWS keys, which only an aws_sigv4 tool can use')
  const token = credential.token.reveal()
  if (credential.dpop !== undefined) {
    if (spec.header?.toLowerCase() !== 'authorization') {
      throw notThisShape(tool, 'is a DPoP-bound token, which goes in the Authorization header only')
    }
    // RFC 9449 §7.1: the DPoP scheme, and a fresh proof for this method and URL, bound to the token by `ath`.
    const proof = credential.dpop.proof(request.method, request.origin + pathAndQuery, token)
    headers.push('authorization', `DPoP ${token}`, 'dpop', proof)
    return pathAndQuery
  }
  if (spec.header !== undefined) {
    // A replacer function: a token may contain `$&` or `$'`, which a replacement string would expand.
    headers.push(spec.header, spec.format === undefined ? token : spec.format.replace('{token}', () => token))
    return pathAndQuery
  }
  if (spec.basic !== undefined) {
    headers.push('authorization', 'Basic ' + Buffer.from(`${spec.basic.username}:${token}`).toString('base64'))
    return pathAndQuery
  }
  return withQueryParam(pathAndQuery, spec.query!, token)
}

async function injectSigV4 (
  tool: Tool, spec: { service: string, region: string }, credential: Credential, headers: string[],
  pathAndQuery: string, request: InjectRequest
): Promise<string> {
  const keys = awsKeySet(credential.token)
  if (keys === undefined) {
    throw notThisShape(tool, 'is not an AWS key set (credential_process JSON: Version, AccessKeyId, SecretAccessKey)')
  }
  // Loaded on the first signed request: a config without aws_sigv4 tools never loads the AWS signer.
  sigv4 ??= import('./aws-sigv4.js')
  const { signSigV4 } = await sigv4
  await signSigV4(headers, keys, {
    tool: tool.name, service: spec.service, region: spec.region, pathAndQuery, ...request,
  })
  return pathAndQuery
}

function notThisShape (tool: Tool, what: string): SidekeyError {
  return new SidekeyError('SIDEKEY_CREDENTIAL_UNAVAILABLE', `the credential of tool ${tool.name} ${what}`,
    { expose: true, details: { tool: tool.name } })
}

function needlesOf (tool: Tool, secrets: readonly string[]): Needle[] {
  const placeholder = tool.config.placeholder ?? DEFAULT_PLACEHOLDER
  const basic = tool.config.inject.basic
  // The shape's secret values (credentials/needles.ts: a token; an AWS key set's secret, key id and session token).
  return secrets.flatMap((secret) => basic === undefined
    ? tokenNeedles(secret, placeholder)
    : basicNeedles(basic.username, secret, placeholder))
}

/** The last scrubber built per tool: rebuilt only when the tool's credential changes (every call for `per_call`). */
const scrubbers = new WeakMap<Tool, { readonly credential: Credential, readonly scrubber: Scrubber }>()

export function scrubberFor (tool: Tool, credential: Credential): Scrubber {
  const cached = scrubbers.get(tool)
  if (cached?.credential === credential) return cached.scrubber
  const secrets = credentialNeedles(credential)
  // Every spelling of a secret is at least as long as the secret (scrub.ts tokenNeedles), so until a header that
  // long or a scrubbed body comes back, the spellings are never built: the common case for a per-call token.
  const scrubber = new Scrubber(() => needlesOf(tool, secrets), Math.min(...secrets.map((s) => s.length)))
  scrubbers.set(tool, { credential, scrubber })
  return scrubber
}

/**
 * Removes every parameter an upstream could read as `name` (queryParamKey: any case, percent-encoded, `name[]`,
 * `;`-separated) and appends the real one: a second spelling must not reach the upstream beside the injected key
 * (docs/threat-model.md, "The agent"). The other parameters and their separators are kept byte for byte:
 * re-serialising them would re-encode (`%20` → `+`) and break signed URLs.
 */
export function withQueryParam (pathAndQuery: string, name: string, value: string | undefined): string {
  const q = pathAndQuery.indexOf('?')
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q)
  const key = nameKey(name)
  let kept = ''
  if (q >= 0) {
    // Parts at even indexes, the `&` or `;` before part i at i - 1.
    const parts = pathAndQuery.slice(q + 1).split(SEPARATOR)
    for (let i = 0; i < parts.length; i += 2) {
      const part = parts[i]!
      if (part !== '' && partKey(part) !== key) kept += (kept === '' ? '' : parts[i - 1]!) + part
    }
  }
  if (value !== undefined) kept += `${kept === '' ? '' : '&'}${encodeURIComponent(name)}=${encodeURIComponent(value)}`
  return kept === '' ? path : `${path}?${kept}`
}

/** The agent's values of every spelling of a query parameter (decoded), for placeholder classification. */
export function queryParam (pathAndQuery: string, name: string): string[] | undefined {
  const q = pathAndQuery.indexOf('?')
  if (q < 0) return undefined
  const key = nameKey(name)
  const values: string[] = []
  for (const part of pathAndQuery.slice(q + 1).split(SEPARATORS)) {
    if (part === '' || partKey(part) !== key) continue
    const eq = part.indexOf('=')
    values.push(eq < 0 ? '' : formDecode(part.slice(eq + 1)))
  }
  return values.length === 0 ? undefined : values
}

/** Servers split a query on `&`, and some (Java servlets, Python's older parse_qs, Rails) on `;` as well. */
const SEPARATORS = /[&;]/
const SEPARATOR = /([&;])/

/**
 * A query parameter's name as the most lenient upstream reads it: `+` and percent-escapes decoded, one case,
 * `name[…]` (PHP, Rails and qs arrays and hashes) as `name`, and PHP's `.` and space as `_`.
 */
function queryParamKey (rawName: string): string {
  let name = formDecode(rawName).trim()
  const bracket = name.indexOf('[')
  if (bracket > 0) name = name.slice(0, bracket)
  return name.replace(/[. ]/g, '_').toLowerCase()
}

const partKey = (part: string): string => {
  const eq = part.indexOf('=')
  return queryParamKey(eq < 0 ? part : part.slice(0, eq))
}
const nameKey = (name: string): string => queryParamKey(encodeURIComponent(name))

/** `application/x-www-form-urlencoded` decoding; an escape that is not UTF-8 is read as the byte it names. */
function formDecode (raw: string): string {
  const s = raw.includes('+') ? raw.replaceAll('+', ' ') : raw
  if (!s.includes('%')) return s
  try {
    return decodeURIComponent(s)
  } catch {
    return s.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  }
}

/**
 * The access key id an agent's SigV4 Authorization names (`Credential=AKID/date/region/service/aws4_request`): its
 * placeholder.
 */
export function awsAccessKeyId (authorization: string | undefined): string | undefined {
  const m = authorization === undefined ? null : /^AWS4-HMAC-SHA256 .*?Credential=([^/,\s]+)\//.exec(authorization)
  return m === null ? undefined : m[1]
}
