import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'

export interface RequestBody {
  /** The whole body, kept so that a 401 can be replayed (small bodies only). */
  kept?: Buffer
  /** The body streamed as it arrives (large or unknown-length bodies), with backpressure. */
  stream?: Readable
  contentLength?: string
}

/**
 * Bodies up to `keepLimit` with a declared length are read whole so a 401 can be replayed; anything else streams
 * with backpressure. A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3).
 */
export async function requestBody (req: IncomingMessage, keepLimit: number): Promise<RequestBody> {
  const cl = req.headers['content-length']
  const chunked = req.headers['transfer-encoding'] !== undefined
  if (cl === undefined && !chunked) return {}
  if (cl !== undefined && !chunked && Number(cl) <= keepLimit) {
    if (cl === '0') return { kept: Buffer.alloc(0) }
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    return { kept: Buffer.concat(chunks) }
  }
  const stream = await afterFirstChunk(req)
  return chunked ? { stream } : { stream, contentLength: cl }
}

/**
 * Nothing is dialled before the first body bytes have parsed: a body whose framing is broken from the start (bad
 * chunk size, oversized chunk extension) is refused by the parser before any byte goes upstream (threat model: the
 * agent, smuggling).
 */
async function afterFirstChunk (req: IncomingMessage): Promise<Readable> {
  const it = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const first = await it.next()
  return Readable.from((async function * () {
    if (first.done === true) return
    yield first.value
    for (let next = await it.next(); next.done !== true; next = await it.next()) yield next.value
  })(), { objectMode: false })
}
