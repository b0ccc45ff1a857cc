// The agent never reads the credential back from a WebSocket either (docs/threat-model.md, "A tool (upstream)"):
// after the 101, an upstream that echoes its request URL (a query key), the Authorization header, the key inside
// a large binary message or split across the fragments of a message (a ping in between) hands the agent the
// placeholder, through absolute-form ws:// and an intercepted wss:// tunnel; the audit and the anomaly say so.
// Ordinary messages, ping, pong and close pass unchanged; no extension is negotiated, as a compressed message
// could not be searched.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProxyAgent, WebSocket } from 'undici'
import { startSidekey } from '../helpers/sidekey.js'
import { upstreamPki } from '../helpers/upstream.js'
import {
  acceptKey, auditLine, connectTo, encodeFrame, FrameReader, handshake, readHead, type Frame,
} from '../protocols/helpers.js'
import { leaks } from './helpers.js'
import { until } from '../helpers/until.js'

const CANARY = `canary-ws-${randomBytes(8).toString('hex')}/+x=`
const HOST = 'ws-echo.test'
const ORDINARY = `plain ${'x'.repeat(300)} \u2713`
const BIG = 70_000

/** One server frame; `fin: false` for all but the last fragment of a message. */
function frame (fin: boolean, opcode: number, payload: string | Buffer): Buffer {
  const f = encodeFrame(opcode, Buffer.from(payload), false)
  if (!fin) f[0]! &= 0x7f
  return f
}

/** The key as the upstream received it: the query's api_key, or the bearer token. */
function keyOf (req: IncomingMessage): { key: string, auth: string } {
  const auth = req.headers.authorization ?? ''
  const query = new URL(req.url ?? '/', 'http://x').searchParams.get('api_key')
  return { key: query ?? auth.replace(/^Bearer /, ''), auth }
}

/** What the upstream saw of each handshake, and the agent's messages it got. */
const seen: Array<{ url: string, extensions: string | undefined }> = []
const received: Buffer[] = []
const sockets = new Set<Duplex>()

/**
 * A WebSocket upstream that, after its 101, echoes what it was sent: the URL, the Authorization header, the key in
 * the middle of a 70 kB binary message (64-bit length), and the key split across two fragments with a ping between
 * them; then an ordinary 16-bit-length message. It echoes the agent's messages (`echo:`), answers ping and close.
 * `/ext` answers with an extension whatever was offered.
 */
function onUpgrade (req: IncomingMessage, socket: Duplex): void {
  sockets.add(socket)
  socket.on('close', () => sockets.delete(socket))
  socket.on('error', () => socket.destroy())
  seen.push({ url: req.url ?? '', extensions: req.headers['sec-websocket-extensions'] })
  const ext = (req.url ?? '').includes('/ext') ? 'sec-websocket-extensions: permessage-deflate\r\n' : ''
  socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
    `sec-websocket-accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n${ext}\r\n`)
  const { key, auth } = keyOf(req)
  const half = Math.floor(key.length / 2)
  socket.write(frame(true, 1, `url: ${req.url ?? ''}`))
  socket.write(frame(true, 1, `auth: ${auth}`))
  socket.write(frame(true, 2, Buffer.concat([Buffer.alloc(BIG, 'b'), Buffer.from(key), Buffer.alloc(100, 'c')])))
  socket.write(frame(false, 1, `split ${key.slice(0, half)}`))
  socket.write(frame(true, 9, 'mid-ping'))
  socket.write(frame(true, 0, `${key.slice(half)} end`))
  socket.write(frame(true, 1, ORDINARY))
  const reader = new FrameReader()
  socket.on('data', (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      if (f.opcode === 1 || f.opcode === 2) {
        received.push(f.payload)
        socket.write(frame(true, f.opcode, Buffer.concat([Buffer.from('echo:'), f.payload])))
      } else if (f.opcode === 9) socket.write(frame(true, 10, f.payload))
      else if (f.opcode === 8) socket.end(frame(true, 8, f.payload))
    }
  })
}

async function listen (server: Server): Promise<number> {
  server.on('upgrade', onUpgrade)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return (server.address() as AddressInfo).port
}

const pki = await upstreamPki()
const leaf = await pki.cert(HOST)
const PLAIN = await listen(createHttpServer())
const TLS = await listen(createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }))

const dir = mkdtempSync(join(tmpdir(), 'sidekey-ws-echo-'))
writeFileSync(join(dir, 'key'), CANARY + '\n', { mode: 0o600 })
const sk = await startSidekey(t, `
instance_id: agent-ws-echo
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { ${HOST}: 127.0.0.1 }
anomaly: { rate_limit: { max: 10000 } }
issuers:
  keyfile: { type: file, path: ${join(dir, 'key')} }
tools:
  query:
    match: { host: ${HOST}, port: ${PLAIN}, path_prefix: /q/ }
    issuer: keyfile
    inject: { query: api_key }
    plaintext: true
  bearer: { match: { host: ${HOST}, port: ${TLS}, path_prefix: /h/ }, issuer: keyfile, scrub_body: true }
  watch:
    { match: { host: ${HOST}, port: ${PLAIN}, path_prefix: /w/ }, issuer: keyfile, plaintext: true, scrub_body: false }
`)
const caPem = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')

/** The agent: an undici WebSocket through the proxy; resolves with the first five messages (binary as latin1). */
async function agentMessages (t: Test, url: string, opts: { tls?: boolean, authorization?: string } = {}):
Promise<string[]> {
  const tls = opts.tls === true
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: tls, ...(tls ? { requestTls: { ca: caPem } } : {}) })
  t.teardown(() => agent.close())
  const headers = opts.authorization === undefined ? {} : { authorization: opts.authorization }
  const ws = new WebSocket(url, { dispatcher: agent, headers })
  t.teardown(() => ws.close())
  ws.binaryType = 'arraybuffer'
  const got: string[] = []
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('message', (e) => {
      got.push(typeof e.data === 'string' ? e.data : Buffer.from(e.data as ArrayBuffer).toString('latin1'))
      if (got.length === 5) resolve()
    })
    ws.addEventListener('close', () => reject(new Error(`closed after ${got.length} messages`)))
  })
  return got
}

/** The five messages as the agent should read them, with `as` where the upstream wrote the key. */
function scrubbed (url: string, auth: string, as: string): string[] {
  return [`url: ${url}`, `auth: ${auth}`, `${'b'.repeat(BIG)}${as}${'c'.repeat(100)}`, `split ${as} end`, ORDINARY]
}

/** The audit of one WebSocket: its 101 and the echo tied to it by request_id; the anomaly. */
async function audited (t: Test, tool: string, from: 'upstream' | 'agent', replaced: boolean): Promise<void> {
  const echoed = await auditLine(sk.log, (e) => e.event === 'credential.echoed' && e.tool === tool && e.from === from)
  t.match(echoed, { echoed: ['ws'], replaced, method: 'GET', host: HOST }, `credential.echoed from ${from}`)
  const used = sk.log.events('credential.used').find((e) => e.request_id === echoed?.request_id)
  t.match(used, { tool, status: 101 }, 'tied to the 101 audited when the socket opened')
  const says = from === 'agent' ? 'the agent sent' : 'echoed in ws'
  const anomaly = await auditLine(sk.log, (e) =>
    e.event === 'anomaly' && e.kind === 'credential_echoed' && e.tool === tool && String(e.detail).includes(says))
  t.ok(anomaly, 'credential_echoed anomaly')
  t.same(leaks(sk.log.text, [CANARY]), [], 'the key is in no log line')
}

t.test('ws:// absolute-form, query key: URL, binary and split echoes reach the agent as the placeholder', async (t) => {
  const before = seen.length
  const got = await agentMessages(t, `ws://${HOST}:${PLAIN}/q/stream?api_key=sidekey&x=1`)
  t.match(seen[before], { url: `/q/stream?x=1&api_key=${encodeURIComponent(CANARY)}`, extensions: undefined },
    'the upstream got the real key and no extension offer')
  t.same(leaks(got.join('\n'), [CANARY]), [], 'the agent never reads the key')
  t.same(got, scrubbed('/q/stream?x=1&api_key=sidekey', '', 'sidekey'))
  t.equal(got[4], ORDINARY, 'an ordinary message arrives byte-identical')
  await audited(t, 'query', 'upstream', true)
})

t.test('wss:// through an intercepted CONNECT, bearer with scrub_body: Authorization echo replaced', async (t) => {
  const got = await agentMessages(t, `wss://${HOST}:${TLS}/h/stream`, { tls: true, authorization: 'Bearer sidekey' })
  t.same(leaks(got.join('\n'), [CANARY]), [], 'the agent never reads the key')
  t.same(got, scrubbed('/h/stream', 'Bearer sidekey', 'sidekey'))
  await audited(t, 'bearer', 'upstream', true)
})

t.test('scrub_body: false: an echo in a message is not rewritten, but audited and raised', async (t) => {
  const got = await agentMessages(t, `ws://${HOST}:${PLAIN}/w/stream`, { authorization: 'Bearer sidekey' })
  t.same(got, scrubbed('/w/stream', `Bearer ${CANARY}`, CANARY), 'the tool opted out of rewriting: messages unchanged')
  await audited(t, 'watch', 'upstream', false)
  const anomaly = sk.log.lines.find((e) => e.event === 'anomaly' && e.tool === 'watch')
  t.match(anomaly?.detail, /passed to the agent/, 'the anomaly does not claim a replacement')
})

/** A raw agent socket after a 101 through absolute-form; the frames it has read so far. */
interface RawAgent { socket: Socket, status: number, frames: Frame[] }

async function rawAgent (t: Test, path: string, extra: Record<string, string> = {}): Promise<RawAgent> {
  const socket = await connectTo(sk.proxyPort)
  t.teardown(() => socket.destroy())
  socket.write(handshake(`http://${HOST}:${PLAIN}${path}`, `${HOST}:${PLAIN}`, extra))
  const head = await readHead(socket)
  const frames: Frame[] = []
  const reader = new FrameReader()
  socket.on('data', (chunk: Buffer) => frames.push(...reader.push(chunk)))
  if (head.rest.length > 0) frames.push(...reader.push(head.rest))
  socket.resume()
  return { socket, status: head.status, frames }
}

/** A masked client frame. */
function clientFrame (opcode: number, payload: string | Buffer): Buffer {
  return encodeFrame(opcode, Buffer.from(payload), true)
}

t.test('raw frames: ping, pong, close, a ping between fragments pass; the agent\'s key is audited', async (t) => {
  const { socket, status, frames } = await rawAgent(t, '/q/raw?api_key=sidekey')
  t.equal(status, 101)
  await until(() => frames.filter((f) => f.opcode === 1 || f.opcode === 0).length >= 5)
  const text = frames.map((f) => f.payload.toString('latin1')).join('\n')
  t.same(leaks(text, [CANARY]), [], 'no frame carries the key')
  t.ok(frames.some((f) => f.opcode === 9 && f.payload.toString() === 'mid-ping'), 'the ping between fragments arrives')
  const mine = received.length
  socket.write(clientFrame(9, 'agent-ping'))
  socket.write(clientFrame(1, ORDINARY))
  socket.write(clientFrame(1, `mine ${CANARY}`))
  await until(() => frames.some((f) => f.opcode === 10 && f.payload.toString() === 'agent-ping'))
  t.pass('the agent\'s ping is answered by the upstream\'s pong')
  await until(() => received.length >= mine + 2)
  t.equal(received[mine]!.toString(), ORDINARY, 'the agent\'s ordinary message reaches the upstream byte-identical')
  t.equal(received[mine + 1]!.toString(), `mine ${CANARY}`, 'a key the agent sends goes on unchanged (to its own tool)')
  await until(() => frames.some((f) => f.payload.toString() === 'echo:mine sidekey'))
  t.pass('and its echo comes back as the placeholder')
  await audited(t, 'query', 'agent', false)
  const close = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('bye')])
  socket.write(clientFrame(8, close))
  await once(socket, 'close')
  t.ok(frames.some((f) => f.opcode === 8 && f.payload.equals(close)), 'the close frame comes back with code and reason')
})

t.test('permessage-deflate is never negotiated: not offered upstream; an upstream forcing it is refused', async (t) => {
  const before = seen.length
  const offer = { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' }
  const { status } = await rawAgent(t, '/q/ext?api_key=sidekey', offer)
  t.equal(seen[before]?.extensions, undefined, 'the agent\'s offer was dropped')
  t.equal(status, 502, 'a 101 with an extension is not joined unsearched')
  const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.path === '/q/ext')
  t.match(used, { status: 502, error: /^SIDEKEY_UPSTREAM_FAILED/ })
})
