import { defaultStrip, type ToolConfig } from '../config/schema.js'
import { SidekeyError } from '../errors.js'
import { readingsOf } from '../net/path.js'
import { pathWithoutQuery } from '../util/path.js'
import { upstreamOverride, type UpstreamOverride } from './upstream/upstream-target.js'

/**
 * Tool matching, kept apart from transport (as mockttp keeps matchers apart from its server).
 * The rule key is (host, port, path prefix, methods): a tool without `match.port` owns port 443 only, so a
 * redirect to the same host on another port or scheme gets no credential (threat model: the agent, credential
 * scope). A plain `http://` call on port 80 to a tool on 443 still matches: it is carried upstream over TLS.
 */

export interface Tool {
  readonly name: string
  readonly config: Readonly<ToolConfig>
  /** Normalised host, or the suffix with its leading dot for `*.suffix`. */
  readonly host: string
  readonly wildcard: boolean
  readonly port: number
  readonly pathPrefix: string
  readonly methods: ReadonlySet<string> | undefined
  /** The headers stripped from the agent's request (config `strip`, filled by the loader), lower-cased. */
  readonly stripSet: ReadonlySet<string>
  /** Config `upstream`: where its traffic is dialled instead of the matched host and port. */
  readonly upstream: UpstreamOverride | undefined
}

/**
 * `upstreamScheme`/`upstreamPort` are the matched origin's, as the agent and the real API know it (Host header,
 * the URL a token is bound to); `upstream`, when the tool has one, is where the connection goes instead.
 */
export type Route =
  | {
    readonly kind: 'tool',
    readonly tool: Tool,
    readonly upstreamScheme: 'http' | 'https',
    readonly upstreamPort: number,
    readonly upstream?: UpstreamOverride
  }
  | { readonly kind: 'none' }

const NONE: Route = Object.freeze({ kind: 'none' })

/** `%2F` or `%5C` in a normalised path (normalisation upper-cases escapes). */
const ENCODED_SLASH = /%2F|%5C/

export class Router {
  readonly tools: ReadonlyMap<string, Tool>
  readonly #exact = new Map<string, Tool[]>()
  readonly #wildcards: Tool[] = []
  /** Every port some tool names: CONNECT is allowed to these. */
  readonly ports: ReadonlySet<number>

  constructor (tools: Readonly<Record<string, Readonly<ToolConfig>>>) {
    const all = new Map<string, Tool>()
    const ports = new Set<number>()
    for (const [name, config] of Object.entries(tools)) {
      const rawHost = config.match.host.toLowerCase().replace(/\.$/, '')
      const wildcard = rawHost.startsWith('*.')
      const tool: Tool = {
        name,
        config,
        host: wildcard ? rawHost.slice(1) : rawHost,
        wildcard,
        port: config.match.port ?? 443,
        pathPrefix: config.match.path_prefix ?? '/',
        methods: config.match.methods === undefined ? undefined : new Set(config.match.methods),
        stripSet: new Set((config.strip ?? defaultStrip(config.inject)).map((h) => h.toLowerCase())),
        upstream: upstreamOverride(config),
      }
      all.set(name, tool)
      ports.add(tool.port)
      if (wildcard) this.#wildcards.push(tool)
      else {
        const list = this.#exact.get(tool.host) ?? []
        list.push(tool)
        this.#exact.set(tool.host, list)
      }
    }
    // Most specific first: longer path prefix; for wildcards, longer suffix first.
    for (const list of this.#exact.values()) list.sort((a, b) => b.pathPrefix.length - a.pathPrefix.length)
    this.#wildcards.sort((a, b) => b.host.length - a.host.length || b.pathPrefix.length - a.pathPrefix.length)
    this.tools = all
    this.ports = ports
  }

  /** True when some tool owns (host, port) on any path: a CONNECT there is intercepted. */
  ownsHost (host: string, port: number): boolean {
    return this.candidates(host).some((t) => portMatches(t, 'https', port) || portMatches(t, 'http', port))
  }

  /**
   * The route for a request whose path is in normal form (net/path.ts), refused (400) when an upstream
   * reading that path another way (decoding it once more, `%2F` as `/`, merging `//`, dropping `;params`, ignoring
   * case) would pick another tool or another answer. Only hosts where some tool has a `path_prefix` are checked:
   * elsewhere the path cannot change the route.
   */
  route (scheme: 'http' | 'https', host: string, port: number, path: string): Route {
    const route = this.match(scheme, host, port, path)
    // An escaped `/` or `\` means one thing to sidekey and, to many upstreams, another: refused on every tool's
    // path unless the tool's API needs it (GitLab's `projects/group%2Fname`) and says so.
    if (route.kind === 'tool' && !route.tool.config.allow_encoded_slash && ENCODED_SLASH.test(pathWithoutQuery(path))) {
      throw new SidekeyError('SIDEKEY_BAD_REQUEST',
        'an escaped / or \\ in the path (set allow_encoded_slash on the tool if its API needs one)')
    }
    if (!this.candidates(host).some((t) => t.pathPrefix !== '/')) return route
    const check = (how: string, reading: string | undefined): void => {
      if (reading !== undefined && sameRoute(route, this.match(scheme, host, port, reading)) &&
        sameRoute(route, this.match(scheme, host, port, reading, true))) return
      throw new SidekeyError('SIDEKEY_BAD_REQUEST', `ambiguous path: ${how} it would take another route`)
    }
    check('in another letter case', path)
    for (const r of readingsOf(path)) check(r.how, r.path)
    return route
  }

  /**
   * The tool for a request. `scheme` is what the agent used; `path` must already be normalised
   * (dot segments resolved) so that a prefix cannot be escaped with `..`. `foldCase` compares prefixes ignoring
   * letter case, as a case-insensitive upstream would. The method plays no part: a tool's `match.methods` is a
   * policy step of the request path (pipeline/policy.ts), so a refused method is refused by the tool it routes to.
   */
  match (scheme: 'http' | 'https', host: string, port: number, path: string, foldCase = false): Route {
    const p = foldCase ? path.toLowerCase() : path
    for (const tool of this.candidates(host)) {
      if (!portMatches(tool, scheme, port)) continue
      if (!pathMatches(foldCase ? tool.pathPrefix.toLowerCase() : tool.pathPrefix, p)) continue
      const tls = scheme === 'https' || !tool.config.plaintext
      const route = { kind: 'tool', tool, upstreamScheme: tls ? 'https' : 'http', upstreamPort: tool.port } as const
      return tool.upstream === undefined ? route : { ...route, upstream: tool.upstream }
    }
    return NONE
  }

  /** Why a request matched or not, in words: for diagnostics (mockttp-style matchers that explain themselves). */
  explain (scheme: 'http' | 'https', host: string, port: number, path: string): string {
    const r = this.match(scheme, host, port, path)
    if (r.kind === 'tool') {
      const sent = r.upstream === undefined ? '' : ` sent to ${r.upstream.origin}`
      return `tool ${r.tool.name}: ${r.upstreamScheme}://${host}:${r.upstreamPort}${r.tool.pathPrefix}${sent}`
    }
    const hosts = this.candidates(host)
    if (hosts.length === 0) return `no tool for host ${host}`
    const here = hosts.map((t) => `${t.name} port ${t.port} prefix ${t.pathPrefix}`).join(', ')
    return `no tool for ${scheme}://${host}:${port}${path} (tools on this host: ${here})`
  }

  /** Every tool whose host (exact, or a `*.suffix` wildcard) covers `host`, on any port or path. */
  candidates (host: string): Tool[] {
    const exact = this.#exact.get(host)
    const wild = this.#wildcards.filter((t) => host.length > t.host.length && host.endsWith(t.host))
    if (exact === undefined) return wild
    return wild.length === 0 ? exact : [...exact, ...wild]
  }
}

function sameRoute (a: Route, b: Route): boolean {
  return a.kind === b.kind && (a.kind === 'none' || a.tool === (b as typeof a).tool)
}

function portMatches (tool: Tool, scheme: 'http' | 'https', port: number): boolean {
  if (port === tool.port) return true
  // A plain http:// call on the default port to a TLS tool: carried upstream over https to the tool's port.
  return scheme === 'http' && port === 80 && tool.port === 443 && !tool.config.plaintext
}

function pathMatches (prefix: string, path: string): boolean {
  if (prefix === '/') return true
  if (!path.startsWith(prefix)) {
    // `/repos/acme` (no trailing slash) matches prefix `/repos/acme/`.
    return prefix.endsWith('/') && path === prefix.slice(0, -1)
  }
  return prefix.endsWith('/') || path.length === prefix.length || '/?'.includes(path[prefix.length]!)
}
