import { Dispatcher } from 'undici'
import type { Router, Tool } from '../router.js'

/**
 * Sends each request to one of two undici Agents: `h2` (ALPN offers h2 and http/1.1) for the origins of tools
 * with `http2: true`, `h1` for everything else — tools with `http2: false`, issuers, pass-through traffic and every
 * upgrade. Upgrades stay on HTTP/1.1 because a WebSocket over an h2 connection needs RFC 8441 extended CONNECT,
 * which few upstreams offer; the agent's `101` must come from an HTTP/1.1 exchange.
 */
export class OriginDispatcher extends Dispatcher {
  readonly #h1: Dispatcher
  readonly #h2: Dispatcher
  readonly #wantsH2: (origin: string) => boolean

  constructor (h1: Dispatcher, h2: Dispatcher, wantsH2: (origin: string) => boolean) {
    super()
    this.#h1 = h1
    this.#h2 = h2
    this.#wantsH2 = wantsH2
  }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h2 = opts.upgrade == null && opts.method !== 'CONNECT' && opts.origin !== undefined &&
      this.#wantsH2(String(opts.origin))
    return (h2 ? this.#h2 : this.#h1).dispatch(opts, handler)
  }

  override close (callback: () => void): void
  override close (): Promise<void>
  override close (callback?: () => void): Promise<void> | void {
    const done = Promise.all([this.#h1.close(), this.#h2.close()]).then(() => {})
    if (callback === undefined) return done
    done.then(callback, callback)
  }

  override destroy (err: Error | null, callback: () => void): void
  override destroy (callback: () => void): void
  override destroy (err: Error | null): Promise<void>
  override destroy (): Promise<void>
  override destroy (a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const err = typeof a === 'function' ? null : a ?? null
    const callback = typeof a === 'function' ? a : b
    const done = Promise.all([this.#h1.destroy(err), this.#h2.destroy(err)]).then(() => {})
    if (callback === undefined) return done
    done.then(callback, callback)
  }
}

/**
 * Which `https://host[:port]` origins belong to a tool that allows HTTP/2. When several tools share an origin,
 * one `http2: false` wins: the opt-out exists for upstreams whose h2 is broken. Returns undefined when no tool
 * allows h2, so the caller can skip the second Agent.
 */
export function h2Origins (router: Router): ((origin: string) => boolean) | undefined {
  const tls = (t: Tool): boolean => t.upstream === undefined ? !t.config.plaintext : t.upstream.scheme === 'https'
  if (![...router.tools.values()].some((t) => tls(t) && t.config.http2)) return undefined
  // A tool with `upstream:` dials its override's origin, never its own host.
  const sentTo = new Map<string, Tool[]>()
  for (const t of router.tools.values()) {
    if (t.upstream !== undefined) sentTo.set(t.upstream.origin, [...sentTo.get(t.upstream.origin) ?? [], t])
  }
  const cache = new Map<string, boolean>()
  return (origin) => {
    const known = cache.get(origin)
    if (known !== undefined) return known
    let answer = false
    if (origin.startsWith('https://')) {
      let url: URL | undefined
      try { url = new URL(origin) } catch { url = undefined }
      if (url !== undefined) {
        const port = url.port === '' ? 443 : Number(url.port)
        const dialsOwnHost = (t: Tool): boolean => t.upstream === undefined && tls(t) && t.port === port
        const matching = sentTo.get(origin) ?? router.candidates(url.hostname.replace(/\.$/, '')).filter(dialsOwnHost)
        answer = matching.length > 0 && matching.every((t) => t.config.http2)
      }
    }
    // Bounded: origins come from tool matches, but wildcard tools could name many hosts.
    if (cache.size >= 1024) cache.clear()
    cache.set(origin, answer)
    return answer
  }
}
