import { createReadStream } from 'node:fs'
import { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'

/**
 * Lines as bytes, exactly as written (the verifier hashes them), from files or stdin, gzip or not (told by its
 * magic bytes, so `-` may be gzip too). Memory stays flat: a line is a view into the chunk it sits in, and a line
 * longer than `maxLine` is cut to `maxLine + 1` bytes (the caller sees it is too long) while the rest is dropped.
 *
 * @example
 *   for await (const line of readLineBytes(['trail.log.gz', '-'], process.stdin)) verifier.line(line)
 */

export const MAX_LINE = 1 << 20

export interface ReadFailure { file: string, code: string, lines: number }

export async function * readLineBytes (
  files: readonly string[], stdin: NodeJS.ReadableStream,
  opts: { maxLine?: number, onError?: (f: ReadFailure) => void, onFile?: (file: string) => void } = {}
): AsyncIterable<Uint8Array> {
  const maxLine = opts.maxLine ?? MAX_LINE
  for (const file of files) {
    opts.onFile?.(file)
    let lines = 0
    try {
      const source = file === '-' ? stdin : createReadStream(file, { highWaterMark: 1 << 20 })
      for await (const line of splitLines(decompressed(source), maxLine)) {
        lines++
        yield line
      }
    } catch (err) {
      if (opts.onError === undefined) throw err
      opts.onError({ file, code: (err as NodeJS.ErrnoException).code ?? (err as Error).message, lines })
    }
  }
}

/** Gunzips when the stream begins with the gzip magic (1f 8b); several gzip members in a row are read in turn. */
async function * decompressed (input: NodeJS.ReadableStream | Readable): AsyncIterable<Buffer> {
  const it = (input as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]()
  const first = await it.next()
  if (first.done === true) return
  const head = toBuffer(first.value)
  async function * all (): AsyncIterable<Buffer> {
    yield head
    for (;;) {
      const next = await it.next()
      if (next.done === true) return
      yield toBuffer(next.value)
    }
  }
  if (head[0] !== 0x1f || head[1] !== 0x8b) {
    yield * all()
    return
  }
  const gunzip = createGunzip()
  const source = Readable.from(all())
  source.on('error', (err) => gunzip.destroy(err))
  source.pipe(gunzip)
  yield * (gunzip as AsyncIterable<Buffer>)
}

const toBuffer = (c: Buffer | string): Buffer => typeof c === 'string' ? Buffer.from(c) : c

async function * splitLines (chunks: AsyncIterable<Buffer>, maxLine: number): AsyncIterable<Uint8Array> {
  let pending: Buffer[] = []
  let pendingLength = 0
  for await (const chunk of chunks) {
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) break
      if (pendingLength === 0) yield chunk.subarray(start, nl)
      else {
        pending.push(chunk.subarray(start, Math.min(nl, start + maxLine + 1 - Math.min(pendingLength, maxLine + 1))))
        yield Buffer.concat(pending)
        pending = []
        pendingLength = 0
      }
      start = nl + 1
    }
    if (start < chunk.length) {
      // Keep at most maxLine + 1 bytes of a line that goes on: enough to tell it is too long.
      const room = maxLine + 1 - Math.min(pendingLength, maxLine + 1)
      if (room > 0) pending.push(Buffer.from(chunk.subarray(start, start + room)))
      pendingLength += chunk.length - start
    }
  }
  if (pendingLength > 0) yield Buffer.concat(pending)
}
