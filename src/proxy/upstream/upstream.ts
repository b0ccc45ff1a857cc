import { createSecureContext, rootCertificates } from 'node:tls'
import type { LookupFunction } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { Agent, type Dispatcher } from 'undici'
import type { Config } from '../../config/schema.js'
import { SidekeyError } from '../../errors.js'
import { h2Origins, OriginDispatcher } from './origin-dispatcher.js'
import type { Router } from '../router.js'

/**
 * The upstream client: one undici Agent, which keeps a keep-alive pool per origin (scheme, host, port; the SNI
 * is the host). It connects through the checked `lookup`, so pins and SSRF checks apply to every dial, and
 * verifies upstream TLS against the system roots plus `upstream_ca_file` (`upstreamCa`, read by config/preflight.ts).
 */
export function createUpstream (
  config: Readonly<Config>, lookup: LookupFunction, router: Router, upstreamCa?: string
): Dispatcher {
  const limits = config.limits
  // One secure context for every dial: given `ca`, each new TLS connection would parse the ~140 system roots again
  // (about 4 ms of CPU per upstream connection in the bench).
  const ca = upstreamCa === undefined
    ? {}
    : { secureContext: createSecureContext({ ca: [...rootCertificates, upstreamCa] }) }
  // HTTP/2 per tool (`http2`, default true): a second Agent offering h2 in ALPN, chosen per origin
  // (origin-dispatcher.ts).
  const agent = (allowH2: boolean): Agent => new Agent({
    allowH2,
    connections: limits.upstream_connections,
    pipelining: 1,
    keepAliveTimeout: Math.min(limits.keep_alive_timeout, 30_000),
    headersTimeout: limits.request_timeout,
    bodyTimeout: limits.idle_timeout,
    maxHeaderSize: limits.max_response_header_bytes,
    connect: {
      timeout: limits.connect_timeout,
      lookup,
      ...ca,
    },
  })
  const wantsH2 = h2Origins(router)
  return wantsH2 === undefined ? agent(false) : new OriginDispatcher(agent(false), agent(true), wantsH2)
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_NOT_YET_VALID',
  'ERR_SSL_WRONG_VERSION_NUMBER', 'CERT_SIGNATURE_FAILURE', 'UNABLE_TO_GET_ISSUER_CERT', 'ERR_TLS_HANDSHAKE_TIMEOUT',
  'EPROTO',
])

/**
 * What the agent (body `detail`, Proxy-Status) and the audit line are told about an upstream failure, by the
 * error's code: fixed words that name no host, path or certificate content.
 */
const UPSTREAM_HINTS: ReadonlyArray<{ codes: readonly string[], detail: string, type: string }> = [
  {
    codes: [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT',
      'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
    ],
    detail: 'upstream certificate not trusted: set upstream_ca_file',
    type: 'tls_certificate_error'
  },
  {
    codes: ['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID'],
    detail: 'upstream certificate expired or not yet valid',
    type: 'tls_certificate_error',
  },
  {
    codes: ['ERR_TLS_CERT_ALTNAME_INVALID'],
    detail: 'upstream certificate does not name this host',
    type: 'tls_certificate_error',
  },
  {
    codes: ['CERT_SIGNATURE_FAILURE'],
    detail: 'upstream certificate signature is invalid',
    type: 'tls_certificate_error',
  },
  {
    codes: ['ERR_SSL_WRONG_VERSION_NUMBER'],
    detail: 'upstream does not speak TLS on this port (plaintext tool?)',
    type: 'tls_protocol_error',
  },
  {
    codes: ['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME'],
    detail: 'upstream host name not found (DNS)',
    type: 'dns_error',
  },
  { codes: ['ECONNREFUSED'], detail: 'upstream refused the connection', type: 'connection_refused' },
  {
    codes: ['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'],
    detail: 'upstream closed the connection',
    type: 'connection_terminated',
  },
  { codes: ['EHOSTUNREACH', 'ENETUNREACH'], detail: 'upstream address unreachable', type: 'destination_ip_unroutable' },
  {
    codes: ['UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'],
    detail: 'upstream did not accept the connection in time',
    type: 'connection_timeout',
  },
  { codes: ['UND_ERR_HEADERS_TIMEOUT'], detail: 'upstream did not answer in time', type: 'http_response_timeout' },
  { codes: ['UND_ERR_BODY_TIMEOUT'], detail: 'upstream stopped sending its answer', type: 'connection_read_timeout' },
  {
    codes: ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'HPE_INVALID_CONSTANT', 'UND_ERR_INFO'],
    detail: 'upstream sent a malformed answer',
    type: 'http_protocol_error',
  },
]
const HINTS: ReadonlyMap<string, { detail: string, type: string }> =
  new Map(UPSTREAM_HINTS.flatMap((h) => h.codes.map((c) => [c, h] as const)))

/** Maps a failure talking to the upstream to what the agent sees; the raw error stays in the log as a code. */
export function upstreamError (err: unknown): SidekeyError {
  if (err instanceof SidekeyError) return err
  // Not every error's code is a string: a DOMException's is a number (an AbortError from a cancelled request is 20).
  const codes = codeChain(err).split('/')
  const hint = codes.map((c) => HINTS.get(c)).find((h) => h !== undefined)
  const hinted = hint === undefined ? {} : { details: { detail: hint.detail }, proxyStatus: hint.type }
  const opts = { expose: false, cause: err, ...hinted }
  if (codes.some((c) => c === 'UND_ERR_CONNECT_TIMEOUT' || c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'ETIMEDOUT')) {
    return new SidekeyError('SIDEKEY_UPSTREAM_TIMEOUT', 'upstream timed out', { ...opts })
  }
  if (codes.some((c) => TLS_CODES.has(c) || c.startsWith('ERR_TLS') || c.startsWith('ERR_SSL'))) {
    return new SidekeyError('SIDEKEY_UPSTREAM_TLS', 'upstream TLS failed', { ...opts })
  }
  return new SidekeyError('SIDEKEY_UPSTREAM_FAILED', 'upstream failed', { ...opts })
}

/** `SIDEKEY_UPSTREAM_TLS:CERT_HAS_EXPIRED`: what failed, for an audit line; never a message. */
export function failureCode (err: unknown): string {
  return `${upstreamError(err).code}:${codeChain(err)}`
}

/**
 * The error's code and its cause's (`UND_ERR_SOCKET/ECONNRESET`), for audit lines: never a message, which may quote
 * what we sent.
 */
export function codeChain (err: unknown): string {
  const e = err as { code?: unknown, cause?: { code?: unknown } }
  const own = typeof e?.code === 'string' ? e.code : undefined
  const cause = typeof e?.cause?.code === 'string' ? e.cause.code : undefined
  return [own, cause].filter((c) => c !== undefined).join('/') || 'unknown'
}

/** Where a body goes, chunk by chunk: `data` returns false to ask the source to pause until `resume()`. */
export interface BodySink {
  data (chunk: Buffer): boolean
  end (): void
  error (err: Error): void
}

/**
 * A body that can be read once into a sink (exchange.ts's UpstreamExchange, or a Readable through `readableSource`).
 */
export interface BodySource {
  attach (sink: BodySink): void
  resume (): void
  cancel (reason?: Error): void
}

/**
 * Streams an upstream response body into the agent's response, with stream.pipeline's error semantics and none of
 * its per-call cost (an AbortController, and a DOMException at the end). Resolves with the bytes relayed once `res`
 * has finished. An error on either side cancels the source, destroys `res` and rejects; an agent that goes away
 * first rejects with ERR_STREAM_PREMATURE_CLOSE, as pipeline does. A `filter` (response scrubbing) rewrites each
 * chunk and may hold some bytes back until the end; the bytes counted are those sent.
 */
export function relay (body: BodySource, res: Writable, filter?: BodyFilter): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0
    let settled = false
    const onDrain = (): void => { body.resume() }
    const onFinish = (): void => {
      if (settled) return
      settled = true
      detach()
      resolve(bytes)
    }
    const fail = (err: Error): void => {
      if (settled) return
      settled = true
      detach()
      body.cancel(err)
      res.destroy(err)
      reject(err)
    }
    const onClose = (): void => {
      if (!settled) fail(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }))
    }
    const detach = (): void => {
      res.off('drain', onDrain)
      res.off('finish', onFinish)
      res.off('close', onClose)
    }
    // The error listener stays attached: a stream destroyed here may still emit one, which must not go unhandled.
    res.on('error', fail)
    res.on('drain', onDrain)
    res.once('finish', onFinish)
    res.once('close', onClose)
    body.attach({
      data: (chunk) => {
        if (settled) return true
        const out = filter === undefined ? chunk : filter.push(chunk)
        if (out.length === 0) return true
        bytes += out.length
        return res.write(out)
      },
      end: () => {
        if (settled) return
        const tail = filter?.end()
        if (tail !== undefined && tail.length > 0) {
          bytes += tail.length
          res.end(tail)
        } else res.end()
      },
      error: fail,
    })
  })
}

/** A Readable as a BodySource (a decoded body on its way to the scrubber). */
export function readableSource (body: Readable): BodySource {
  return {
    attach: (sink) => {
      body.on('data', (chunk: Buffer) => { if (!sink.data(chunk)) body.pause() })
      body.once('end', () => sink.end())
      body.on('error', (err) => sink.error(err))
    },
    resume: () => { body.resume() },
    cancel: () => { body.destroy() },
  }
}

/** Rewrites a body as it streams (scrub.ts's BodyScrubber). */
export interface BodyFilter {
  /** The bytes to send for this chunk (possibly fewer, held back for the next one). */
  push (chunk: Buffer): Buffer
  /** What was held back; called once, at the end. */
  end (): Buffer
}

/**
 * Exchanges in flight per upstream origin (threat model: the agent, exhaustion, Envoy's circuit breakers): undici
 * holds at most `upstream_connections` per origin and queues the rest; past `upstream_pending` queued, a request
 * is refused at once (503) instead of waiting behind an upstream that does not answer.
 */
export class OriginLimiter {
  readonly #inFlight = new Map<string, number>()

  /** Counts one exchange to `origin`, or throws SIDEKEY_OVERLOADED; call the returned function exactly when it ends. */
  acquire (origin: string, max: number): () => void {
    const n = this.#inFlight.get(origin) ?? 0
    if (n >= max) throw new SidekeyError('SIDEKEY_OVERLOADED', 'too many requests waiting for this upstream')
    this.#inFlight.set(origin, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.#inFlight.get(origin) ?? 1) - 1
      if (left === 0) this.#inFlight.delete(origin)
      else this.#inFlight.set(origin, left)
    }
  }
}
