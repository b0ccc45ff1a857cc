import type { ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { UpstreamExchange } from '../../src/proxy/upstream/exchange.js'
import { downstreamHeaders } from '../../src/proxy/headers.js'
import { relay } from '../../src/proxy/upstream/upstream.js'
import { Scrubber, basicNeedles, tokenNeedles } from '../../src/proxy/scrub/scrub.js'
import { ResponseScrub } from '../../src/proxy/scrub/scrub-response.js'

/**
 * The cost of response scrubbing (src/proxy/scrub/scrub.ts), measured in the bench process: a typical answer's headers
 * scrubbed (always on), and text bodies streamed through a body scrubber (per tool, `scrub_body`) in the chunk
 * sizes undici delivers. No needle occurs: the common case. `scale` 1 is the full run (200,000 header sets, 256 MiB
 * of body per chunk size).
 */
export function scrubTable (out: string[], scale: number): void {
  const token = 'sk-bench-' + 'a1b2c3d4'.repeat(5)
  const scrubber = new Scrubber(basicNeedles('agent', token, 'sidekey'))
  const headers = [
    'content-type', 'application/json; charset=utf-8', 'content-length', '1024', 'date', new Date().toUTCString(),
    'server', 'nginx', 'cache-control', 'no-store', 'x-request-id', '0f8fad5b-d9cb-469f-a165-70867728950e',
    'strict-transport-security', 'max-age=63072000', 'set-cookie', 'session=abc123; Path=/; HttpOnly; Secure',
    'link', '<https://api.example.com/v1/items?page=2>; rel="next"', 'etag', 'W/"5e15153d-120f"',
  ]
  const rounds = Math.ceil(200_000 * scale)
  for (let i = 0; i < 1000; i++) scrubber.headers(headers.slice())
  const headerNs = cpuNs(() => { for (let i = 0; i < rounds; i++) scrubber.headers(headers.slice()) }) / rounds
  const copyNs = cpuNs(() => { for (let i = 0; i < rounds; i++) headers.slice() }) / rounds
  out.push('### Response scrubbing (src/proxy/scrub/scrub.ts, in the bench process)', '')
  out.push(`Needles of one basic-auth credential (${token.length}-byte token, ${new Set(basicNeedles('agent', token, 'sidekey').map((n) => n.secret)).size} ` +
    'distinct spellings: raw, base64 and base64url at 3 alignments, the exact basic value; its encoded spellings equal the raw one). ' +
    'No needle occurs in the input (the common case). ' +
    'CPU time of this process (user + system), so that other load on the machine does not count.', '')
  out.push('| | cost |', '|---|--:|')
  out.push(`| headers: ${headers.length / 2} fields of a typical answer, per response (always on) | ${(headerNs - copyNs).toFixed(0)} ns |`)
  const total = Math.ceil(256 * scale) * 2 ** 20
  const text = Buffer.from(JSON.stringify({ items: Array.from({ length: 2000 }, (_, i) => ({ id: i, name: `item ${i}`, note: 'lorem ipsum dolor sit amet' })) }))
  for (const size of [1024, 16 * 1024, 64 * 1024]) {
    const chunks: Buffer[] = []
    for (let off = 0; chunks.length * size < total; off = (off + size) % (text.length - size)) chunks.push(text.subarray(off, off + size))
    const body = scrubber.body()
    let sent = 0
    const ns = cpuNs(() => {
      for (const c of chunks) sent += body.push(c).length
      sent += body.end().length
    })
    out.push(`| body in ${size / 1024} KiB chunks: scrubbed throughput, one core | ${(sent / 2 ** 20 / (ns / 1e9)).toFixed(0)} MiB/s (${(ns / (sent / 1024)).toFixed(0)} ns per KiB) |`)
  }
  out.push('')
}

/** CPU time (user + system) `fn` took, in ns. */
function cpuNs (fn: () => void): number {
  const before = process.cpuUsage()
  fn()
  const used = process.cpuUsage(before)
  return (used.user + used.system) * 1000
}

/** One answer as the upstream sends it: its raw header list and its body in the chunks a socket delivers. */
interface Answer { readonly name: string, readonly headers: string[], readonly chunks: readonly Buffer[] }

/**
 * What body scrubbing costs per request with the default (`scrub_body: true`) against the opt-out (`false`: the
 * body relayed unchanged, its first 64 KiB searched for an echo), on LLM-sized answers. The whole response path of
 * src/proxy/scrub/scrub-response.ts runs in the bench process: an upstream exchange fed as undici feeds it, relayed into
 * a writable that takes what the agent would get. The two modes alternate in rounds; medians of the rounds.
 */
export async function scrubPerRequestTable (out: string[], scale: number): Promise<void> {
  const token = 'sk-proj-' + 'Xq7b9Kd2mPz4'.repeat(4)
  const scrubber = new Scrubber(tokenNeedles(token, 'sidekey'))
  const json = (bytes: number): Buffer => {
    const items: Array<{ index: number, text: string }> = []
    const text = (i: number): string => JSON.stringify({ object: 'chat.completion', choices: items, usage: { total_tokens: i } })
    for (let i = 0; text(i).length < bytes; i++) items.push({ index: i, text: 'The quick brown fox jumps over the lazy dog. ' })
    return Buffer.from(text(items.length))
  }
  const sized = (name: string, body: Buffer, chunk: number): Answer => {
    const chunks: Buffer[] = []
    for (let off = 0; off < body.length; off += chunk) chunks.push(body.subarray(off, off + chunk))
    return { name, headers: ['content-type', 'application/json', 'content-length', String(body.length)], chunks }
  }
  const events = Array.from({ length: 500 }, (_, i) =>
    Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-1', choices: [{ index: 0, delta: { content: ` token${i}` } }] })}\n\n`))
  const answers: Answer[] = [
    sized('1 KiB JSON, one chunk, Content-Length', json(1024), 1024),
    sized('64 KiB JSON, 16 KiB chunks, Content-Length', json(64 * 1024), 16 * 1024),
    { name: `SSE stream, 500 events of ~${events[1]!.length} B, one chunk each`, headers: ['content-type', 'text/event-stream'], chunks: events },
  ]
  const requests = Math.max(20, Math.ceil(2000 * scale))
  const rounds = 5
  out.push('### Body scrubbing per request: default against `scrub_body: false`', '')
  out.push(`One bearer token (${token.length} bytes, ${new Set(tokenNeedles(token, 'sidekey').map((n) => n.secret)).size} spellings), absent from the bodies. ` +
    `CPU time of the bench process per request, median of ${rounds} alternated rounds of ${requests} requests each.`, '')
  out.push('| answer | `scrub_body: true` (default) | `scrub_body: false` | headers only (no body search) | default − opt-out |',
    '|---|--:|--:|--:|--:|')
  const modes: readonly Mode[] = ['scrub', 'watch', 'headers']
  for (const answer of answers) {
    const samples = new Map<Mode, number[]>(modes.map((m) => [m, []]))
    for (let i = 0; i < 50; i++) for (const mode of modes) await answerOnce(scrubber, mode, answer)
    for (let r = 0; r < rounds; r++) {
      for (const mode of modes) {
        const before = process.cpuUsage()
        for (let i = 0; i < requests; i++) await answerOnce(scrubber, mode, answer)
        const used = process.cpuUsage(before)
        samples.get(mode)!.push((used.user + used.system) / requests)
      }
    }
    const [scrub, watch, headers] = modes.map((m) => median(samples.get(m)!)) as [number, number, number]
    out.push(`| ${answer.name} | ${scrub.toFixed(1)} µs | ${watch.toFixed(1)} µs | ${headers.toFixed(1)} µs | ${(scrub - watch).toFixed(1)} µs |`)
  }
  out.push('')
}

/** The body scrubbed (the default), watched (the opt-out), or only relayed after the headers are scrubbed. */
type Mode = 'scrub' | 'watch' | 'headers'

/** One answer through the response path handler.ts runs; resolves when the agent's side has finished. */
async function answerOnce (scrubber: Scrubber, mode: Mode, answer: Answer): Promise<void> {
  const exchange = new UpstreamExchange()
  exchange.onRequestStart(IDLE_CONTROLLER)
  exchange.onResponseStart({ ...IDLE_CONTROLLER, rawHeaders: answer.headers } as unknown as Dispatcher.DispatchController, 200, {})
  const agent = new AgentSide()
  let relayed: Promise<number>
  if (mode === 'headers') {
    const scrub = new ResponseScrub(scrubber, false)
    agent.writeHead(200, scrub.headers(downstreamHeaders(exchange.headers)))
    relayed = relay(exchange, agent)
  } else relayed = new ResponseScrub(scrubber, mode === 'scrub').relay(agent as unknown as ServerResponse, 'GET', exchange)
  for (const chunk of answer.chunks) exchange.onResponseData(IDLE_CONTROLLER, chunk)
  exchange.onResponseEnd()
  await relayed
}

/** undici's controller as the exchange sees it; the whole answer is fed at once, so pausing has nothing to stop. */
const IDLE_CONTROLLER = { rawHeaders: [], pause: () => {}, resume: () => {}, abort: () => {} } as unknown as Dispatcher.DispatchController

/** The agent's response as relay() writes it (writeHead, write, end), counting the bytes. */
class AgentSide extends Writable {
  bytes = 0
  writeHead (_status: number, _headers: string[]): this {
    return this
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.bytes += chunk.length
    callback()
  }
}

function median (values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.floor(sorted.length / 2)]!
}
