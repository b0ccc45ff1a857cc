import { ipFamily } from '../net/family.js'
import { isLocalhostName } from '../net/self.js'
import { normalizePath } from '../net/path.js'
import { checkHostName, createAddressClassifier, isLoopbackHost, parseToolHost } from './host.js'
import type { KeyPath } from './yaml-source.js'

/** How cross-checks report: a message at the key or the value of a path, and a value shown only when allowed. */
export interface CheckContext {
  problem (path: KeyPath, message: string, where?: 'key' | 'value'): void
  /** `"value"`, or a placeholder when the value came from the environment or is a secret. */
  show (path: KeyPath, value: string): string
}

type Rec = Record<string, unknown>
const isRec = (v: unknown): v is Rec => typeof v === 'object' && v !== null && !Array.isArray(v)
const entries = (v: unknown): Array<[string, unknown]> => isRec(v) ? Object.entries(v) : []

/** Lower case, one trailing dot removed: the form hosts are compared and frozen in. */
export function normalizeHostName (host: string): string {
  const lower = host.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/**
 * Checks that span several keys, on the raw (not yet validated) data, so that they are reported together with
 * the schema's problems. Every value is type-checked before use: a wrong type is the schema's problem to report.
 */
export function crossCheck (raw: unknown, ctx: CheckContext): void {
  if (!isRec(raw)) return
  const classify = createAddressClassifier()
  const pins = checkResolve(raw.resolve, ctx)
  checkIssuers(raw.issuers, pins, ctx)
  checkInventory(raw, ctx)

  const issuerNames = isRec(raw.issuers) ? Object.keys(raw.issuers) : []
  const seen = new Map<string, string>()
  for (const [name, tool] of entries(raw.tools)) {
    if (!isRec(tool)) continue
    const base = ['tools', name]

    if (typeof tool.issuer === 'string' && isRec(raw.issuers) && !Object.hasOwn(raw.issuers, tool.issuer)) {
      const known = issuerNames.length > 0 ? `issuers defined: ${issuerNames.join(', ')}` : 'no issuers are defined'
      ctx.problem([...base, 'issuer'], `unknown issuer ${ctx.show([...base, 'issuer'], tool.issuer)} (${known})`)
    }

    checkCredentialShape(raw.issuers, tool, base, ctx)
    // Without a broker, a fleet budget would be counted on each instance: N times what was written.
    if (Array.isArray(tool.budget) && raw.fleet === undefined) {
      tool.budget.forEach((b, i) => {
        if (isRec(b) && b.by === 'fleet') {
          ctx.problem([...base, 'budget', i, 'by'], 'by: fleet needs a fleet: section (a broker to count in)')
        }
      })
    }
    // The approval webhook carries what the agent is doing: plain http stays on this machine, as a token URL does.
    const webhook = isRec(tool.approval) ? tool.approval.webhook : undefined
    if (typeof webhook === 'string') checkTokenUrl([...base, 'approval', 'webhook'], webhook, pins, ctx)

    const match = isRec(tool.match) ? tool.match : undefined
    if (match === undefined || typeof match.host !== 'string') continue
    const hostPath = [...base, 'match', 'host']
    const host = parseToolHost(match.host)
    if (!host.ok) {
      ctx.problem(hostPath, host.reason)
      continue
    }
    if (host.kind === 'ip') {
      const kind = classify(host.host)
      if (kind !== undefined) {
        const article = kind === 'unspecified' ? 'an' : 'a'
        ctx.problem(hostPath, `${ctx.show(hostPath, match.host)} is ${article} ${kind} address; ` +
          'credentials are not sent to non-public IP literals: give the tool a host name and pin it in resolve: ' +
          '(e.g. resolve: { api.internal.test: 10.0.0.5 })')
      }
    }

    // With `upstream:`, the matched host is never dialled: the override's own rules apply to what is.
    if (isRec(tool.upstream)) checkUpstream(tool, base, pins, ctx)
    else if (tool.plaintext === true) {
      if (!isLoopbackHost(host.host, pins)) {
        const unpinnable = host.kind === 'wildcard' ? 'a wildcard' : 'an IP literal'
        const how = host.kind === 'name'
          ? `(e.g. resolve: { ${host.host}: 127.0.0.1 })`
          : `(an exact host name: ${unpinnable} cannot be pinned)`
        ctx.problem([...base, 'plaintext'], 'plaintext: true would send the credential over the network in clear; ' +
          'it is only ' +
          `allowed when match.host is pinned to a loopback address in resolve: ${how}`)
      }
    }

    // No port means 443 to the router (proxy/router.ts), so `{host: a}` and `{host: a, port: 443}` are one route.
    const port = String(typeof match.port === 'number' ? match.port : 443)
    const prefix = typeof match.path_prefix === 'string' ? match.path_prefix : '/'
    // Requests are matched in normal form (net/path.ts): a prefix in any other form would never match.
    const normal = normalPrefix(prefix)
    if (normal !== prefix) {
      const prefixPath = [...base, 'match', 'path_prefix']
      const hint = normal === undefined
        ? '(no query, fragment, backslash, control bytes or bad escapes)'
        : `(write it as ${JSON.stringify(normal)})`
      ctx.problem(prefixPath, `path_prefix ${ctx.show(prefixPath, prefix)} is not a normalised path ${hint}`)
    }
    const route = `${host.host} ${port} ${prefix}`
    const other = seen.get(route)
    if (other === undefined) seen.set(route, name)
    else {
      ctx.problem(hostPath, `tool "${other}" already matches the same host, port and path_prefix; ` +
        'a request would match both (give one a more specific path_prefix or port, or merge them)')
    }
  }
}

/**
 * A tool's `upstream:` is dialled with the tool's credential, so it meets a tool host's rules: a name, or a public
 * IP literal (a private one is a name pinned in resolve:); and plain http only as `plaintext: true` allows it, to a
 * host pinned to loopback, so that a credential matched on https never crosses a network in clear.
 */
function checkUpstream (tool: Rec, base: KeyPath, pins: ReadonlyMap<string, string>, ctx: CheckContext): void {
  const upstream = tool.upstream as Rec
  if (typeof upstream.host !== 'string') return
  const hostPath = [...base, 'upstream', 'host']
  const parsed = parseToolHost(upstream.host)
  if (!parsed.ok || parsed.kind === 'wildcard') {
    const reason = parsed.ok
      ? 'an upstream is one host: a wildcard cannot be dialled'
      : parsed.reason.includes('path_prefix')
        ? 'a host has no path (the path sent is the agent\'s)'
        : parsed.reason.replace('match.', 'upstream.')
    ctx.problem(hostPath, reason)
    return
  }
  const shown = ctx.show(hostPath, upstream.host)
  if (parsed.kind === 'ip') {
    const kind = createAddressClassifier()(parsed.host)
    if (kind !== undefined) {
      ctx.problem(hostPath, `${shown} is ${kind === 'unspecified' ? 'an' : 'a'} ${kind} address; credentials are not ` +
        'sent to non-public IP literals: name it and pin the name in resolve: ' +
        '(e.g. resolve: { mock.internal.test: 127.0.0.1 })')
    } else if (upstream.scheme !== 'http' && upstream.tls_server_name === undefined) {
      ctx.problem(hostPath, 'an IP literal sends no TLS server name: set upstream.tls_server_name to the name ' +
        `${shown}'s certificate carries`)
    }
  }
  const name = upstream.tls_server_name
  if (typeof name === 'string' && checkHostName(normalizeHostName(name)) !== undefined) {
    const path = [...base, 'upstream', 'tls_server_name']
    ctx.problem(path, 'tls_server_name is a DNS host name (what the certificate names), not an address')
  }
  if (upstream.scheme !== 'http') return
  if (tool.plaintext !== true) {
    ctx.problem([...base, 'upstream', 'scheme'], 'scheme: http sends the credential matched for this tool in clear ' +
      '(an agent\'s https call too): it needs plaintext: true on the tool, and a host pinned to loopback')
  } else if (!isLoopbackHost(parsed.host, pins)) {
    // The example pins the host itself, unless it must not be shown (it came from the environment).
    const example = shown === JSON.stringify(parsed.host) ? parsed.host : 'mock.internal.test'
    const how = parsed.kind === 'name' ? `(e.g. resolve: { ${example}: 127.0.0.1 })` : ''
    ctx.problem(hostPath, 'scheme: http would send the credential over the network in clear; it is only allowed to a ' +
      `host pinned to a loopback address in resolve: ${how}`.trimEnd())
  }
}

/**
 * What a tool's credential must be for its options: aws_sigv4 signs with an AWS key set (a file or exec issuer);
 * require_placeholder needs a placeholder to require; per_call signs with sidekey's own keys (local_jwt), which
 * makes a use count meaningless.
 */
function checkCredentialShape (issuers: unknown, tool: Rec, base: KeyPath, ctx: CheckContext): void {
  const inject = isRec(tool.inject) ? tool.inject : undefined
  const issuer = isRec(issuers) && typeof tool.issuer === 'string' && Object.hasOwn(issuers, tool.issuer)
    ? issuers[tool.issuer]
    : undefined
  const type = isRec(issuer) ? issuer.type : undefined
  if (inject?.aws_sigv4 !== undefined && typeof type === 'string' && type !== 'file' && type !== 'exec') {
    ctx.problem([...base, 'issuer'], `inject.aws_sigv4 signs with an AWS key set, which a ${type} issuer does not ` +
      'hand out: use a file issuer (a file holding credential_process JSON) or an exec issuer ' +
      '(a credential_process helper)')
  }
  if (tool.require_placeholder === true && typeof tool.placeholder !== 'string') {
    ctx.problem([...base, 'require_placeholder'], 'require_placeholder: true needs placeholder: the value the agent ' +
      'must send where the credential goes (for aws_sigv4, the access key id its SDK is configured with)')
  }
  if (tool.per_call === undefined || tool.per_call === false) return
  if (typeof type === 'string' && type !== 'local_jwt') {
    ctx.problem([...base, 'per_call'], 'per_call needs a local_jwt issuer (a token is signed for each call with ' +
      `sidekey's own keys); issuer ${ctx.show([...base, 'issuer'], String(tool.issuer))} is ${type}`, 'key')
  }
  if (isRec(tool.refresh) && tool.refresh.max_uses !== undefined) {
    const why = 'max_uses has no effect with per_call: every call already gets its own token'
    ctx.problem([...base, 'refresh', 'max_uses'], why, 'key')
  }
}

/**
 * Inventory mode intercepts TLS to destinations no tool names, so the CA must be able to sign for any host: its
 * name constraints (on by default) would make every such handshake fail at the agent.
 */
function checkInventory (raw: Rec, ctx: CheckContext): void {
  if (!isRec(raw.egress) || raw.egress.unmatched !== 'inventory') return
  const ca = isRec(raw.ca) ? raw.ca : undefined
  if (ca?.name_constraints === false) return
  ctx.problem(['egress', 'unmatched'], 'inventory intercepts TLS to every destination no tool covers, so it needs ' +
    'a CA that may sign for any host: set ca.name_constraints: false (a CA the agent trusts for every host: ' +
    'keep it to the inventory phase, then turn the constraints back on, which makes a new CA the agent must ' +
    'trust again)')
}

/** Checks `resolve:` and returns its pins by normalised host name. */
function checkResolve (resolve: unknown, ctx: CheckContext): Map<string, string> {
  const pins = new Map<string, string>()
  const names = new Set<string>()
  for (const [written, ip] of entries(resolve)) {
    const path = ['resolve', written]
    const name = normalizeHostName(written)
    const reason = ipFamily(name) !== 0 ? 'pin a host name here, not an address' : checkHostName(name)
    const twice = names.has(name)
    names.add(name)
    if (reason !== undefined) ctx.problem(path, reason, 'key')
    else if (twice) ctx.problem(path, `${name} is pinned twice`, 'key')
    if (typeof ip !== 'string') continue
    if (ipFamily(ip) === 0) {
      const why = 'is not an IP address (resolve: pins host names to addresses, like curl --resolve)'
      ctx.problem(path, `${ctx.show(path, ip)} ${why}`)
    } else if (reason === undefined && !twice) pins.set(name, ip)
  }
  return pins
}

const SECRET_METHODS = new Set(['client_secret_basic', 'client_secret_post'])

function checkIssuers (issuers: unknown, pins: ReadonlyMap<string, string>, ctx: CheckContext): void {
  for (const [name, issuer] of entries(issuers)) {
    if (!isRec(issuer)) continue
    const base = ['issuers', name]
    const type = issuer.type
    if (type !== 'oauth2_client_credentials' && type !== 'oauth2_token_exchange') continue
    if (typeof issuer.token_url === 'string') checkTokenUrl([...base, 'token_url'], issuer.token_url, pins, ctx)
    if (typeof issuer.revocation_url === 'string') {
      checkTokenUrl([...base, 'revocation_url'], issuer.revocation_url, pins, ctx)
    }
    // Discovery GETs the resource's metadata and sends credentials where it points: the same rule for where it starts.
    if (typeof issuer.resource === 'string') checkTokenUrl([...base, 'resource'], issuer.resource, pins, ctx)
    if (typeof issuer.authorization_server === 'string') {
      checkTokenUrl([...base, 'authorization_server'], issuer.authorization_server, pins, ctx)
    }
    // Defaults as in schema.ts: client credentials authenticate with a secret, token exchange with none.
    const method = issuer.auth_method ?? (type === 'oauth2_client_credentials' ? 'client_secret_basic' : 'none')
    if (typeof method !== 'string') continue
    const methodPath = issuer.auth_method === undefined ? base : [...base, 'auth_method']
    const where = issuer.auth_method === undefined ? 'key' : 'value'
    if (method !== 'none' && issuer.client_id === undefined && type === 'oauth2_token_exchange') {
      ctx.problem(methodPath, `auth_method ${method} needs client_id`, where)
    }
    if (SECRET_METHODS.has(method)) {
      const inline = issuer.client_secret !== undefined
      const file = issuer.client_secret_file !== undefined
      if (!inline && !file) {
        ctx.problem(methodPath, `auth_method ${method} needs client_secret_file (or client_secret)`, where)
      } else if (inline && file) {
        ctx.problem([...base, 'client_secret_file'], 'set only one of client_secret and client_secret_file', 'key')
      }
    } else if (method === 'private_key_jwt' && issuer.private_key_file === undefined) {
      ctx.problem(methodPath, 'auth_method private_key_jwt needs private_key_file', where)
    }
  }
}

/**
 * A token request carries the client secret or assertion (and, for token exchange, the subject token), and its
 * answer a credential: plain http:// is only allowed where the tools' `plaintext` is, on this machine.
 */
function checkTokenUrl (path: KeyPath, value: string, pins: ReadonlyMap<string, string>, ctx: CheckContext): void {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return // not a URL: the schema says so
  }
  if (url.protocol !== 'http:') return
  // WHATWG URL has already normalised the host (lower case, `127.1` → `127.0.0.1`), as the connect will see it.
  const bracketed = url.hostname.startsWith('[') && url.hostname.endsWith(']')
  const host = normalizeHostName(bracketed ? url.hostname.slice(1, -1) : url.hostname)
  if (isLoopbackHost(host, pins)) return
  const shown = ctx.show(path, host)
  if (isLocalhostName(host)) {
    const example = shown === JSON.stringify(host) ? host : 'localhost'
    ctx.problem(path, 'plain http:// carries this issuer\'s client credentials and tokens in clear, so it must ' +
      `surely stay on this machine: ${shown} unpinned is whatever the system resolver says (and is refused while ` +
      'egress.block_private is on); write http://127.0.0.1:PORT/... or pin it ' +
      `(e.g. resolve: { ${example}: 127.0.0.1 })`)
    return
  }
  // The example pins the host itself, unless it is an address or must not be shown (it came from the environment).
  const name = ipFamily(host) === 0 && shown === JSON.stringify(host) ? host : 'idp.internal.test'
  ctx.problem(path, `plain http:// to ${shown} would send this issuer's client credentials and tokens over the ` +
    'network in clear; use https://, or for an issuer on this machine a loopback address (http://127.0.0.1:PORT/...) ' +
    `or a host name pinned to one in resolve: (e.g. resolve: { ${name}: 127.0.0.1 })`)
}

function normalPrefix (prefix: string): string | undefined {
  if (prefix.includes('?')) return undefined
  try { return normalizePath(prefix) } catch { return undefined }
}
