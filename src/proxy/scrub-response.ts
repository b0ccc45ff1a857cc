import type { ServerResponse } from 'node:http'
import { pipeline, type Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import { SidekeyError } from '../errors.js'
import { downstreamHeaders } from './headers.js'
import type { Scrubber } from './scrub.js'
import type { UpstreamExchange } from './exchange.js'
import { readableSource, relay } from './upstream.js'

/** Content types scrubbed as text: what an error page, a redirect body, JSON or a debug dump is served as. */
const TEXT_LIKE = /^text\/|json|xml|javascript|ecmascript|x-www-form-urlencoded|yaml/i

/** Content codings decoded so that a body can be scrubbed (sidekey asks for identity; a few upstreams ignore it). */
const DECODERS: Record<string, () => NodeJS.ReadWriteStream> = {
  gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress,
}

/**
 * One upstream answer on its way to the agent: headers always scrubbed, the body too when the tool's
 * `scrub_body` is on and the body is text. Remembers where the credential was found, for the audit.
 */
export class ResponseScrub {
  readonly #scrubber: Scrubber
  readonly #bodies: boolean
  #echoed: string[] | undefined
  #body: { echoed: boolean } | undefined

  constructor (scrubber: Scrubber, bodies: boolean) {
    this.#scrubber = scrubber
    this.#bodies = bodies
  }

  /** Rewrites a flat header list in place (also a WebSocket 101's) and remembers the names that held the credential. */
  headers (flat: string[]): string[] {
    for (const name of this.#scrubber.headers(flat) ?? []) if (this.#echoed?.includes(name) !== true) (this.#echoed ??= []).push(name)
    return flat
  }

  /**
   * Writes the upstream's answer to the agent and relays its body; resolves with the body bytes sent. A scrubbed
   * body loses its Content-Length (the placeholder need not be as long as the secret: h1 sends it chunked, h2
   * ends the stream) and, when the upstream compressed it anyway, is sent decoded. A compressed body in a coding
   * sidekey cannot decode is refused (502) rather than passed on unread.
   */
  async relay (res: ServerResponse, method: string, answer: UpstreamExchange): Promise<number> {
    const status = answer.statusCode
    const flat = this.headers(downstreamHeaders(answer.headers))
    if (!this.#bodies || !hasBody(method, status) || !TEXT_LIKE.test(answer.field('content-type') ?? 'text/plain')) {
      res.writeHead(status, flat)
      return await relay(answer, res)
    }
    const coding = (answer.field('content-encoding') ?? 'identity').trim().toLowerCase()
    const decoder = coding === 'identity' || coding === '' ? undefined : DECODERS[coding]
    if (decoder === undefined && coding !== 'identity' && coding !== '') {
      answer.release()
      throw new SidekeyError('SIDEKEY_UPSTREAM_FAILED', 'upstream answered in a content coding that cannot be scrubbed', { status: 502, details: { reason: 'unscrubbable_encoding' } })
    }
    res.writeHead(status, withoutFields(flat, decoder === undefined ? ['content-length'] : ['content-length', 'content-encoding']))
    const filter = this.#scrubber.body()
    this.#body = filter
    if (decoder === undefined) return await relay(answer, res, filter)
    return await relay(readableSource(pipeline(answer.stream(), decoder(), () => {}) as unknown as Readable), res, filter)
  }

  /** Where the credential came back in this answer (header names, then `body`), or undefined. */
  echoed (): string[] | undefined {
    if (this.#body?.echoed !== true) return this.#echoed
    return [...this.#echoed ?? [], 'body']
  }
}

/** HEAD answers, 1xx, 204 and 304 have no body (RFC 9110 §6.4.1). */
function hasBody (method: string, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304
}

function withoutFields (flat: string[], names: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < flat.length; i += 2) if (!names.includes(flat[i]!.toLowerCase())) out.push(flat[i]!, flat[i + 1]!)
  return out
}
