import type { Dispatcher } from 'undici'
import { IssuerError } from '../../errors.js'
import { ipFamily } from '../../net/family.js'
import { classifyIp } from '../../net/ip.js'
import { discard, jsonObject, originAndPath, readCapped } from './token-endpoint.js'
import { errorCode } from '../../errors.js'

/** Metadata documents are small; a bigger answer is refused unread. */
export const MAX_METADATA_BYTES = 64 * 1024

/** What discovery found for a protected resource: the authorization server it trusts and that server's endpoints. */
export interface DiscoveredServer {
  readonly resource: string
  /** The authorization server's issuer identifier, as its metadata states it (equal to where it was fetched). */
  readonly issuer: string
  readonly tokenEndpoint: string
  readonly revocationEndpoint: string | undefined
  readonly resourceMetadataUrl: string
  readonly issuerMetadataUrl: string
}

export interface DiscoveryRequest {
  /** The configured resource (a remote MCP server's canonical URI). */
  readonly resource: string
  /** The issuer to use: the config's `authorization_server`, or the one an earlier discovery pinned. */
  readonly issuer: string | undefined
  /** Upper bound on each metadata GET. */
  readonly timeoutMs: number
  readonly dispatcher: Dispatcher
  readonly signal: AbortSignal
}

/**
 * RFC 9728 then RFC 8414 / OpenID discovery, as the MCP authorization spec orders it: the resource's metadata must
 * name the configured resource, the chosen authorization server's metadata must name itself as `issuer`, and every
 * URL either names must pass `checkDiscoveredUrl`. Redirects are not followed. Throws IssuerError.
 *
 * @example
 *   const server = await discover({ resource: 'https://mcp.example.com/mcp', issuer: undefined, timeoutMs,
 *     dispatcher, signal })
 *   server.tokenEndpoint // 'https://auth.example.com/oauth/token'
 */
export async function discover (req: DiscoveryRequest): Promise<DiscoveredServer> {
  const resource = new URL(req.resource)
  const where = `discovery for resource ${resource.href}`
  const bad = (why: string): IssuerError => new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where}: ${why}`)

  const prm = await firstDocument(protectedResourceMetadataUrls(resource), req, where, 'protected resource metadata')
  if (typeof prm.doc.resource !== 'string' || !sameUrl(prm.doc.resource, resource.href)) {
    throw bad(`${prm.url} names resource ${shown(prm.doc.resource)}, not the configured one`)
  }
  const listed = Array.isArray(prm.doc.authorization_servers)
    ? prm.doc.authorization_servers.filter((s): s is string => typeof s === 'string')
    : []
  if (listed.length === 0) throw bad(`${prm.url} names no authorization_servers`)
  const chosen = req.issuer === undefined ? listed[0]! : listed.find((s) => sameIssuer(s, req.issuer!))
  if (chosen === undefined) {
    const names = listed.slice(0, 3).map(shown).join(', ')
    throw bad(`${prm.url} no longer names authorization server ${req.issuer} (it names ${names}); ` +
      'sidekey keeps the one it first used until a restart, or set authorization_server')
  }
  const issuerUrl = checkDiscoveredUrl(chosen, resource, 'authorization server', where)

  const asmUrls = authorizationServerMetadataUrls(issuerUrl)
  const asm = await firstDocument(asmUrls, req, where, 'authorization server metadata')
  if (typeof asm.doc.issuer !== 'string' || !sameIssuer(asm.doc.issuer, chosen)) {
    throw bad(`${asm.url} names issuer ${shown(asm.doc.issuer)}, not ${chosen} where it was fetched (RFC 8414 §3.3)`)
  }
  if (typeof asm.doc.token_endpoint !== 'string') throw bad(`${asm.url} names no token_endpoint`)
  const tokenEndpoint = checkDiscoveredUrl(asm.doc.token_endpoint, resource, 'token_endpoint', where).href
  const revocation = asm.doc.revocation_endpoint
  const revocationEndpoint = typeof revocation === 'string'
    ? checkDiscoveredUrl(revocation, resource, 'revocation_endpoint', where).href
    : undefined
  return {
    resource: resource.href,
    issuer: asm.doc.issuer,
    tokenEndpoint,
    revocationEndpoint,
    resourceMetadataUrl: prm.url,
    issuerMetadataUrl: asm.url,
  }
}

/**
 * RFC 9728 §3.1: the well-known name goes between the host and the resource's path; then the root, as MCP clients
 * fall back.
 */
export function protectedResourceMetadataUrls (resource: URL): string[] {
  const path = resource.pathname.replace(/\/$/, '')
  const root = `${resource.origin}/.well-known/oauth-protected-resource`
  return path === '' ? [root] : [`${root}${path}`, root]
}

/**
 * RFC 8414 §3.1 (well-known name before the issuer's path), then OpenID Connect Discovery in the RFC 8414 form and
 * in its own (appended after the path), in the order the MCP authorization spec gives.
 */
export function authorizationServerMetadataUrls (issuer: URL): string[] {
  const path = issuer.pathname.replace(/\/$/, '')
  const o = issuer.origin
  if (path === '') return [`${o}/.well-known/oauth-authorization-server`, `${o}/.well-known/openid-configuration`]
  return [`${o}/.well-known/oauth-authorization-server${path}`, `${o}/.well-known/openid-configuration${path}`,
    `${o}${path}/.well-known/openid-configuration`]
}

/**
 * A URL a metadata document named, checked before sidekey sends a client secret or a subject token there: http(s)
 * without userinfo; plain http, or an address that is not public (loopback, private, link-local metadata services),
 * only when the configured resource is itself plain http (which the config check allows on this machine only) or
 * that very address. Host names are checked again when dialled (`egress.block_private`, `resolve:` pins).
 */
export function checkDiscoveredUrl (value: string, resource: URL, what: string, where: string): URL {
  const refuse = (why: string): IssuerError =>
    new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where}: ${what} ${shown(value)} ${why}`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw refuse('is not a URL')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw refuse('is not http(s)')
  if (url.username !== '' || url.password !== '') throw refuse('carries credentials')
  const local = resource.protocol === 'http:'
  if (url.protocol === 'http:' && !local) throw refuse('is plain http while the resource is https')
  const host = url.hostname.replace(/^\[|\]$/g, '')
  if (ipFamily(host) !== 0 && classifyIp(host) !== 'public' && !local && url.hostname !== resource.hostname) {
    throw refuse(`is a ${classifyIp(host)} address, where a remote resource may not send sidekey's client credentials`)
  }
  const loopback = ipFamily(host) !== 0 && classifyIp(host) === 'loopback'
  if (url.protocol === 'http:' && !loopback && url.hostname !== resource.hostname) {
    throw refuse('is plain http to neither a loopback address nor the resource\'s own host')
  }
  return url
}

interface Document { readonly url: string, readonly doc: Record<string, unknown> }

/** GETs each candidate in turn: a 4xx, 3xx or 502 moves on to the next (as MCP clients do), anything else decides. */
async function firstDocument (urls: readonly string[], req: DiscoveryRequest, where: string,
  what: string): Promise<Document> {
  let last = ''
  for (const url of urls) {
    const got = await getJson(url, req, where)
    if (typeof got !== 'number') return { url, doc: got }
    last = `${url} answered HTTP ${got}`
    if (!(got >= 300 && got < 500) && got !== 502) break
  }
  throw new IssuerError('SIDEKEY_ISSUER_FAILED', `${where}: no ${what} (${last})`, { cause: { moved: true } })
}

/** The JSON object at `url`, or the HTTP status when it is not 200. */
async function getJson (url: string, req: DiscoveryRequest, where: string): Promise<Record<string, unknown> | number> {
  const timeout = AbortSignal.timeout(req.timeoutMs)
  const failed = (err: unknown): IssuerError => {
    if (req.signal.aborted) return new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `${where}: request to ${url} was aborted`)
    if (timeout.aborted) {
      return new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `${where}: ${url} did not answer within ${req.timeoutMs} ms`)
    }
    return new IssuerError('SIDEKEY_ISSUER_FAILED', `${where}: request to ${url} failed (${errorCode(err)})`)
  }
  let res: Dispatcher.ResponseData
  try {
    res = await req.dispatcher.request({
      ...originAndPath(url),
      method: 'GET',
      headers: { accept: 'application/json' },
      signal: AbortSignal.any([req.signal, timeout]),
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
      ...({ maxRedirections: 0 } as object),
    })
  } catch (err) {
    throw failed(err)
  }
  if (res.statusCode !== 200) {
    discard(res.body)
    return res.statusCode
  }
  let raw: Buffer | undefined
  try {
    raw = await readCapped(res.body, res.headers['content-length'], MAX_METADATA_BYTES)
  } catch (err) {
    throw failed(err)
  }
  const bad = (why: string): IssuerError =>
    new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${where}: ${url} answered with ${why}`)
  if (raw === undefined) throw bad(`more than ${MAX_METADATA_BYTES} bytes`)
  return jsonObject(raw, bad)
}

function sameUrl (a: string, b: string): boolean {
  try {
    return new URL(a).href === new URL(b).href
  } catch {
    return false
  }
}

/** Identical, or differing only by one trailing slash (an `authorization_servers` entry written with one). */
function sameIssuer (a: string, b: string): boolean {
  return a === b || `${a}/` === b || a === `${b}/`
}

/** A value from a remote document, for an error message: URL-like text up to 120 characters, else its kind. */
function shown (value: unknown): string {
  if (typeof value !== 'string') return value === undefined ? '(none)' : `(a ${value === null ? 'null' : typeof value})`
  return /^[\x21-\x7e]{1,120}$/.test(value) ? JSON.stringify(value) : '(an unprintable or long string)'
}
