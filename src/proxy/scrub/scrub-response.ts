import type { ServerResponse } from 'node:http'
import { pipeline, type Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import { SidekeyError } from '../../errors.js'
import { readHead } from './body-head.js'
import { downstreamHeaders } from '../headers.js'
import type { BodyOptions, BodyScan, Scrubber } from './scrub.js'
import { EchoWatch } from './scrub-watch.js'
import type { UpstreamExchange } from '../upstream/exchange.js'
import { readableSource, relay, type BodyFilter, type BodySource } from '../upstream/upstream.js'

/**
 * Content types searched for every spelling of the credential: what an error page, a redirect body, JSON, a debug
 * dump or a multipart answer (whose parts are mostly text) is served as. Other bodies are searched for the bytes
 * sidekey put on the wire.
 */
const TEXT_LIKE = /^text\/|json|xml|javascript|ecmascript|x-www-form-urlencoded|yaml|^multipart\//i

/** Content codings decoded so that a body can be scrubbed (sidekey asks for identity; a few upstreams ignore it). */
const DECODERS: Record<string, () => NodeJS.ReadWriteStream> = {
  gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress,
}

/**
 * A scrubbed body with a Content-Length up to this is read whole and sent with its own, scrubbed length: the agent
 * gets the framing the upstream chose, for the price of holding one small body.
 */
const WHOLE_BODY_BYTES = 64 * 1024

/**
 * One upstream answer on its way to the agent: headers always scrubbed, the body too when the tool's
 * `scrub_body` is on (every body; text ones for every spelling), else its first bytes watched for an echo.
 * Remembers where the credential was found, for the audit.
 */
export class ResponseScrub {
  readonly #scrubber: Scrubber
  readonly #bodies: boolean
  #echoed: string[] | undefined
  #body: { readonly echoed: boolean } | undefined
  readonly #rewrite: ((contentType: string | undefined) => BodyFilter | undefined) | undefined
  readonly #observe: ((chunk: Buffer) => void) | undefined

  /**
   * `rewrite`: a filter the body passes through before it is scrubbed (an MCP tool's list answers, src/mcp/).
   * `observe`: sees the body bytes as the agent gets them, without holding them (a token budget's usage scanner).
   */
  constructor (
    scrubber: Scrubber, bodies: boolean, rewrite?: (contentType: string | undefined) => BodyFilter | undefined,
    observe?: (chunk: Buffer) => void
  ) {
    this.#scrubber = scrubber
    this.#bodies = bodies
    this.#rewrite = rewrite
    this.#observe = observe
  }

  /** Rewrites a flat header list in place (also a WebSocket 101's) and remembers the names that held the credential. */
  headers (flat: string[]): string[] {
    for (const name of this.#scrubber.headers(flat) ?? []) {
      if (this.#echoed?.includes(name) !== true) (this.#echoed ??= []).push(name)
    }
    return flat
  }

  /**
   * Writes the upstream's answer to the agent and relays its body; resolves with the body bytes sent. A small body
   * with a Content-Length is scrubbed whole and sent with the new length; a larger or streamed one loses its
   * Content-Length (the placeholder need not be as long as the secret: h1 sends it chunked, h2 ends the stream)
   * and, when the upstream compressed it anyway, is sent decoded. A body sidekey cannot read is refused (502)
   * rather than passed on unread: a transfer coding other than chunked, a content coding it cannot decode or
   * stacked codings, gzip bytes under an empty or `identity` Content-Encoding.
   */
  async relay (res: ServerResponse, method: string, answer: UpstreamExchange): Promise<number> {
    const status = answer.statusCode
    const flat = this.headers(downstreamHeaders(answer.headers))
    if (!hasBody(method, status)) {
      res.writeHead(status, flat)
      return await relay(answer, res)
    }
    const contentType = answer.field('content-type')
    const options = bodyOptions(contentType)
    const codings = contentCodings(answer.field('content-encoding'))
    const rewrite = this.#rewrite?.(contentType)
    if (!this.#bodies && rewrite === undefined) {
      // Opted out: relayed as it comes, but an echo in its first bytes is still audited (when they can be read).
      const watch = codings.length === 0 ? new EchoWatch(this.#scrubber.body(options)) : undefined
      this.#body = watch
      res.writeHead(status, flat)
      return await relay(answer, res, observed(watch, this.#observe))
    }
    const transfer = answer.field('transfer-encoding')
    if (transfer !== undefined && transfer.split(',').some((c) => c.trim().toLowerCase() !== 'chunked')) {
      throw unreadable(answer, 'unscrubbable_transfer_coding', 'a transfer coding')
    }
    if (codings.length > 1) throw unreadable(answer, 'unscrubbable_encoding', 'stacked content codings')
    const decoder = codings.length === 0 ? undefined : DECODERS[codings[0]!]
    if (codings.length === 1 && decoder === undefined) {
      throw unreadable(answer, 'unscrubbable_encoding', 'a content coding')
    }
    let source: BodySource = decoder === undefined
      ? answer
      : readableSource(pipeline(answer.stream(), decoder(), () => {}) as unknown as Readable)
    const length = decoder === undefined ? Number(answer.field('content-length') ?? NaN) : NaN
    // Content-Encoding present but saying nothing: the first bytes tell whether it is gzip anyway.
    const sniff = decoder === undefined && answer.field('content-encoding') !== undefined
    const want = length <= WHOLE_BODY_BYTES ? WHOLE_BODY_BYTES + 1 : sniff ? GZIP_MAGIC.length : 0
    const scan = this.#scrubber.body(options)
    this.#body = this.#bodies ? scan : new EchoWatch(scan)
    const filter = rewrite === undefined ? this.#body as BodyScan : chained(rewrite, this.#body as BodyScan)
    const dropped = decoder === undefined ? ['content-length'] : ['content-length', 'content-encoding']
    if (want > 0) {
      const head = await readHead(source, want)
      source = head.body
      if (sniff && head.bytes.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) {
        throw unreadable(answer, 'unscrubbable_encoding', 'gzip bytes under an empty Content-Encoding')
      }
      if (head.complete) {
        const out = rewrite === undefined && this.#bodies && scan.whole !== undefined
          ? scan.whole(head.bytes)
          : Buffer.concat([filter.push(head.bytes), filter.end()])
        this.#observe?.(out)
        res.writeHead(status, [...withoutFields(flat, dropped), 'content-length', String(out.length)])
        return await relay(bufferSource(out), res)
      }
    }
    res.writeHead(status, withoutFields(flat, dropped))
    return await relay(source, res, observed(filter, this.#observe))
  }

  /** Where the credential came back in this answer (header names, then `body`), or undefined. */
  echoed (): string[] | undefined {
    if (this.#body?.echoed !== true) return this.#echoed
    return [...this.#echoed ?? [], 'body']
  }
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b])

/** Content types seen, and how each is scrubbed: an upstream sends few; the map stops growing at its bound. */
const OPTIONS_BY_TYPE = new Map<string | undefined, BodyOptions>()
const OPTIONS_KEPT = 256

function bodyOptions (contentType: string | undefined): BodyOptions {
  let options = OPTIONS_BY_TYPE.get(contentType)
  if (options === undefined) {
    options = optionsOf(contentType)
    if (OPTIONS_BY_TYPE.size < OPTIONS_KEPT) OPTIONS_BY_TYPE.set(contentType, options)
  }
  return options
}

/** A content type's scrubbing: text or not, and a UTF-16 charset it names. */
function optionsOf (contentType: string | undefined): BodyOptions {
  const type = contentType ?? 'text/plain'
  const charset = /;\s*charset\s*=\s*"?(utf-16(?:le|be)?)"?\s*(?:;|$)/i.exec(type)?.[1]?.toLowerCase()
  const text = TEXT_LIKE.test(type.split(';')[0]!.trim())
  return charset === undefined ? { text } : { text, encoding: charset as BodyOptions['encoding'] }
}

/** The codings a Content-Encoding lists, in order, without `identity` and empty members. */
function contentCodings (value: string | undefined): string[] {
  if (value === undefined) return []
  return value.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity')
}

/** Cuts the answer and names what could not be read; the agent gets a 502 with no byte of the body. */
function unreadable (answer: UpstreamExchange, reason: string, what: string): SidekeyError {
  answer.cancel(new Error('unscrubbable answer'))
  return new SidekeyError('SIDEKEY_UPSTREAM_FAILED', `upstream answered in ${what} that cannot be scrubbed`,
    { details: { reason } })
}

/** A body already in hand, as a source for relay(). */
function bufferSource (bytes: Buffer): BodySource {
  return {
    attach: (sink) => {
      if (bytes.length > 0) sink.data(bytes)
      sink.end()
    },
    resume: () => {},
    cancel: () => {},
  }
}

/** `first`'s output through `then`. */
function chained (first: BodyFilter, then: BodyFilter): BodyFilter {
  return {
    push: (chunk) => then.push(first.push(chunk)),
    end: () => Buffer.concat([then.push(first.end()), then.end()]),
  }
}

/** `filter` (or the body as is) with its output shown to `observe`. */
function observed (
  filter: BodyFilter | undefined, observe: ((chunk: Buffer) => void) | undefined
): BodyFilter | undefined {
  if (observe === undefined) return filter
  const seen = (bytes: Buffer): Buffer => {
    observe(bytes)
    return bytes
  }
  return filter === undefined
    ? { push: seen, end: () => Buffer.alloc(0) }
    : { push: (chunk) => seen(filter.push(chunk)), end: () => seen(filter.end()) }
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
