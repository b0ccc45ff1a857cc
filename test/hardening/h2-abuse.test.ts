// HTTP/2 abuse inside an intercepted tunnel, on raw frames over TLS with the proxy's CA (docs/threat-model.md,
// "The agent"): each attack ends its own session, costs the sidecar bounded memory, sends nothing upstream beyond
// the streams it opened, and a fresh agent session is served afterwards. The sidecar runs as its own process so
// that its RSS is its own.
import t, { type Test } from 'tap'
import { connect as h2connect, constants } from 'node:http2'
import { once } from 'node:events'
import { upstreamPki } from '../helpers/upstream.js'
import { tlsThroughTunnel } from '../helpers/connect.js'
import { FLAG, FRAME, frame, getBlock, indexedField, indexedLiteralField, rawH2, startH2Upstream } from '../protocols/h2-helpers.js'
import { until } from '../helpers/until.js'
import { sidekeyProcess } from './sink.js'

const MiB = 1024 * 1024
const pki = await upstreamPki()
const up = await startH2Upstream(await pki.cert('h2.tool.test'))
t.teardown(() => up.close())
const sk = await sidekeyProcess(t, `
instance_id: agent-h2-abuse
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { h2.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools: { h2api: { match: { host: h2.tool.test, port: ${up.port} }, issuer: local, placeholder: sidekey } }
`)
const authority = `h2.tool.test:${up.port}`
const open = (t: Test): ReturnType<typeof rawH2> => rawH2(t, sk.port, 'h2.tool.test', up.port, sk.caPem)
const hung = (): number => up.seen.filter((s) => s.url.startsWith('/hang')).length

/** A normal request on a new agent session is answered by the upstream. */
async function stillServes (t: Test, path: string): Promise<void> {
  const socket = await tlsThroughTunnel(sk.port, `h2.tool.test:${up.port}`, { servername: 'h2.tool.test', ca: sk.caPem, alpn: ['h2'] })
  const session = h2connect(`https://${authority}`, { createConnection: () => socket })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  const stream = session.request({ ':path': path, ':authority': authority })
  const [headers] = await once(stream, 'response') as [Record<string, unknown>]
  for await (const _ of stream) { /* drain */ }
  t.equal(headers[':status'], 200, 'a fresh agent session is served afterwards')
  t.ok(up.seen.some((s) => s.url === path), 'and its request reached the upstream')
}

/**
 * Writes `batches` batches from `make(batch)` while the socket takes them, each after the previous one was
 * flushed, so the proxy acts between them; returns how many batches went out.
 */
async function flood (socket: { writable: boolean, write (b: Buffer, cb: () => void): boolean }, batches: number, make: (batch: number) => Buffer): Promise<number> {
  let written = 0
  for (; written < batches && socket.writable; written++) {
    await new Promise<void>((resolve) => socket.write(make(written), () => resolve()))
  }
  return written
}

/** Every upstream request of the reset streams is cancelled there too: none is left holding an upstream stream. */
async function upstreamCancelled (t: Test, hungBefore: number, cancelledBefore: number, sent: number): Promise<void> {
  const reached = (): number => hung() - hungBefore
  t.ok(reached() <= sent, `${reached()} of the ${sent} streams written reached the upstream`)
  await until(() => up.cancelled - cancelledBefore >= reached(), 'the upstream to see every reset stream cancelled')
  t.equal(up.cancelled - cancelledBefore, reached(), 'each of them cancelled there')
}

const cancel = Buffer.from([0, 0, 0, constants.NGHTTP2_CANCEL])
const rssAtStart = sk.rss()

/** The attack's session has ended: GOAWAY received or the socket closed (polled, bounded). */
async function ended (log: { goawayCodes: number[] }, socket: { destroyed: boolean }): Promise<void> {
  await until(() => log.goawayCodes.length > 0 || socket.destroyed, 'a GOAWAY or the connection closed')
}

/** RSS stays within a generous bound of where the sidecar started (it is ~300 MB run from source). */
function memoryBounded (t: Test): void {
  const growth = sk.rss() - rssAtStart
  t.comment(`sidecar RSS ${(sk.rss() / MiB).toFixed(0)} MiB, +${(growth / MiB).toFixed(1)} MiB since the first test`)
  t.ok(growth < 64 * MiB, 'RSS grew by less than 64 MiB')
}

/** `count` streams in batches of 50, each a GET of `path` followed by `after(id)`. */
async function streams (socket: Parameters<typeof flood>[0], path: string, count: number, after: (id: number) => Buffer): Promise<number> {
  const block = getBlock(authority, path)
  const perBatch = 50
  const batches = await flood(socket, count / perBatch, (b) => Buffer.concat(Array.from({ length: perBatch }, (_, i) => {
    const id = 1 + 2 * (b * perBatch + i)
    return Buffer.concat([frame(FRAME.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, id, block), after(id)])
  })))
  return batches * perBatch
}

t.test('rapid reset: 5,000 streams opened and reset at once end the session; reset work upstream is cancelled', async (t) => {
  await stillServes(t, '/warm-up')
  const [hungBefore, cancelledBefore] = [hung(), up.cancelled]
  const { socket, log, closed } = await open(t)
  const sent = await streams(socket, '/hang-reset', 5000, (id) => frame(FRAME.RST_STREAM, 0, id, cancel))
  await closed
  t.comment(`${sent} HEADERS + RST_STREAM written; GOAWAY ${log.goawayCodes.join(',')}; ${hung() - hungBefore} reached the upstream`)
  // Sidekey's own premature-reset rule (http2.max_premature_resets): Node's guard alone answers INTERNAL_ERROR.
  t.ok(log.goawayCodes.includes(constants.NGHTTP2_ENHANCE_YOUR_CALM), 'the proxy sent GOAWAY ENHANCE_YOUR_CALM')
  t.ok(hung() - hungBefore <= 200, 'at most max_premature_resets + max_concurrent_streams reached the upstream')
  await upstreamCancelled(t, hungBefore, cancelledBefore, sent)
  memoryBounded(t)
  await stillServes(t, '/after-rapid-reset')
})

t.test('streams past max_concurrent_streams are refused; a flood of them ends the session, the admitted ones are cancelled', async (t) => {
  const [hungBefore, cancelledBefore] = [hung(), up.cancelled]
  const { socket, log, closed } = await open(t)
  const sent = await streams(socket, '/hang-refused', 5000, () => Buffer.alloc(0))
  await closed
  const refused = log.types.filter((type) => type === FRAME.RST_STREAM).length
  t.comment(`${sent} HEADERS written; ${refused} RST_STREAM back; ${hung() - hungBefore} reached the upstream`)
  t.ok(hung() - hungBefore <= 100, 'no more than max_concurrent_streams reached the upstream')
  await upstreamCancelled(t, hungBefore, cancelledBefore, sent)
  memoryBounded(t)
  await stillServes(t, '/after-refused')
})

// Frames that make the server end a stream or the connection itself (the "MadeYouReset" family): not counted as
// the agent's resets by the rule above, so each must end the session on its own.
// nghttp2 answers both with a connection error: GOAWAY, no new stream is read; Node keeps the socket until the
// stream already admitted ends.
const serverMadeErrors: Array<[string, string, (id: number) => Buffer]> = [
  ['DATA on a stream the agent has ended', 'data', (id) => frame(FRAME.DATA, 0, id, Buffer.from('x'))],
  ['WINDOW_UPDATE of 0 on a stream', 'window-update', (id) => frame(FRAME.WINDOW_UPDATE, 0, id, Buffer.alloc(4))],
]
for (const [name, tag, after] of serverMadeErrors) {
  t.test(`${name}, on 5,000 streams: GOAWAY at the first, nothing more goes upstream`, async (t) => {
    const hungBefore = hung()
    const { socket, log } = await open(t)
    const sent = await streams(socket, '/hang-made', 5000, after)
    await ended(log, socket)
    t.comment(`${sent} written; GOAWAY ${log.goawayCodes.join(',')}; socket closed: ${socket.destroyed}; ${hung() - hungBefore} reached the upstream`)
    t.ok(log.goawayCodes.length > 0 || socket.destroyed, 'the session was ended')
    // The stream before the error may run to its answer (or request_timeout): it is the agent's one request.
    t.ok(hung() - hungBefore <= 1, 'no stream after the error reached the upstream')
    memoryBounded(t)
    await stillServes(t, `/after-${tag}`)
  })
}

t.test('CONTINUATION flood of empty frames (100,000 bounded): cut off, nothing upstream', async (t) => {
  const { socket, log } = await open(t)
  socket.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, getBlock(authority, '/cont-empty')))
  const empty = frame(FRAME.CONTINUATION, 0, 1)
  const batches = await flood(socket, 100, () => Buffer.concat(Array.from({ length: 1000 }, () => empty)))
  await ended(log, socket)
  t.comment(`${batches * 1000} empty CONTINUATION frames written; GOAWAY ${log.goawayCodes.join(',')}`)
  t.ok(log.goawayCodes.length > 0 || socket.destroyed, 'the session was ended')
  t.notOk(up.seen.some((s) => s.url === '/cont-empty'), 'the unfinished request never went upstream')
  memoryBounded(t)
  await stillServes(t, '/after-cont-empty')
})

t.test('HPACK bomb in CONTINUATION frames: one-byte references to a 4 KB table entry are cut off', async (t) => {
  const { socket, log } = await open(t)
  socket.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, Buffer.concat([getBlock(authority, '/bomb'), indexedLiteralField('x-bomb', 'b'.repeat(4000))])))
  // Index 62 is the newest dynamic table entry: each byte of these frames stands for 4 KB of header list.
  const refs = frame(FRAME.CONTINUATION, 0, 1, Buffer.concat(Array.from({ length: 1000 }, () => indexedField(62))))
  const batches = await flood(socket, 100, () => refs)
  await ended(log, socket)
  t.comment(`${batches} frames of 1,000 references (${batches * 4} MB of header list) written; GOAWAY ${log.goawayCodes.join(',')}`)
  t.ok(log.goawayCodes.length > 0 || socket.destroyed, 'the session was ended')
  t.notOk(up.seen.some((s) => s.url === '/bomb'), 'the request never went upstream')
  memoryBounded(t)
  await stillServes(t, '/after-bomb')
})
