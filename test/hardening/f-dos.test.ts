// Threat model, the agent, exhaustion: slow, hostile and heavy clients and upstreams (memory under load: f-dos-memory.test.ts).
// Timings are bounds, never assertions of speed; the measured figures are printed as comments for the closing note.
import t from 'tap'
import * as net from 'node:net'
import { request, Agent } from 'undici'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as h2connect } from 'node:http2'
import { once } from 'node:events'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { needBinary, systemBinary } from '../helpers/system-binary.js'
import { tlsThroughTunnel } from '../helpers/connect.js'
import { raw, startRawUpstream } from './helpers.js'
import { until } from '../helpers/until.js'
import { completeResponse } from './tunnel-client.js'
import { sinkUpstream } from './sink.js'

const MiB = 1024 * 1024
const run = promisify(execFile)
const curl = await systemBinary('curl', 'curl')

const sink = await sinkUpstream(t)
const S = sink.port

t.test('slowloris sockets are reaped within headers_timeout + 1 s, while 20 concurrent clients are served', async (t) => {
  const sk = await startSidekey(t, `
instance_id: agent-f1
ca: { dir: {{CA_DIR}} }
resolve: { sink.tool.test: 127.0.0.1 }
limits: { headers_timeout: 2s }
issuers: { local: { type: local_jwt } }
tools: { sink: { match: { host: sink.tool.test, port: ${S} }, issuer: local, plaintext: true } }
`)
  const ATTACKERS = 50
  const closedAfter: number[] = []
  const attack = Array.from({ length: ATTACKERS }, () => new Promise<void>((resolve) => {
    const started = Date.now()
    const s = net.connect({ host: '127.0.0.1', port: sk.proxyPort })
    let lines = 0
    // One more header line every 300 ms, forever: headers never complete. Bounded by the 10 s give-up below.
    const drip = setInterval(() => { if (lines++ < 40) s.write(`X-Slow-${lines}: a\r\n`) }, 300)
    const giveUp = setTimeout(() => s.destroy(), 10_000)
    s.on('connect', () => s.write(`GET http://sink.tool.test:${S}/ HTTP/1.1\r\nHost: sink.tool.test\r\n`))
    s.on('error', () => {})
    s.on('close', () => { clearInterval(drip); clearTimeout(giveUp); closedAfter.push(Date.now() - started); resolve() })
  }))
  // While the attack runs: 20 concurrent well-behaved clients, and the health probe.
  const client = new Agent({ connections: 20 })
  t.teardown(() => client.close())
  const served = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const r = await raw(sk.proxyPort, `GET http://sink.tool.test:${S}/c${i} HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`, { until: completeResponse })
    return r.status
  }))
  t.same(served, Array(20).fill(200), '20 concurrent clients served during the attack')
  await Promise.all(attack)
  const worst = Math.max(...closedAfter)
  t.comment(`slowloris: ${ATTACKERS} sockets, reaped after ${Math.min(...closedAfter)}-${worst} ms (headers_timeout 2000 ms)`)
  t.ok(worst < 2000 + 1000 + 2000, `every slowloris socket was closed by the proxy (worst ${worst} ms)`)
  const health = await request(`${sk.adminUrl}/healthz`, { dispatcher: client })
  t.equal(health.statusCode, 200)
  await health.body.dump()
  const after = await raw(sk.proxyPort, `GET http://sink.tool.test:${S}/after HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`, { until: completeResponse })
  t.equal(after.status, 200, 'serving normally afterwards')
})

t.test('an intercepted CONNECT that half-closes or says nothing frees its connection slot, not after the idle timeout', async (t) => {
  const sk = await startSidekey(t, `
instance_id: agent-f1c
ca: { dir: {{CA_DIR}} }
resolve: { sink.tool.test: 127.0.0.1 }
limits: { headers_timeout: 1s, max_connections: 8 }
issuers: { local: { type: local_jwt } }
tools: { sink: { match: { host: sink.tool.test, port: ${S} }, issuer: local, plaintext: true } }
`)
  // Opens a tunnel to the tool, reads the 200, then either half-closes or stays silent; resolves when the proxy closes it.
  const tunnel = (mode: 'end' | 'silent'): Promise<boolean> => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: sk.proxyPort })
    const giveUp = setTimeout(() => { s.destroy(); resolve(false) }, 15_000)
    s.on('connect', () => s.write(`CONNECT sink.tool.test:${S} HTTP/1.1\r\nHost: sink.tool.test:${S}\r\n\r\n`))
    s.once('data', () => { if (mode === 'end') s.end() })
    s.on('error', () => {})
    s.on('close', () => { clearTimeout(giveUp); resolve(true) })
  })
  // Twice the connection limit of each kind: a slot held until the idle timeout (300 s) would lock the listener.
  const closed = await Promise.all([...Array.from({ length: 16 }, () => tunnel('end')), ...Array.from({ length: 16 }, () => tunnel('silent'))])
  t.ok(closed.every(Boolean), 'every such tunnel was closed by the proxy within headers_timeout')
  const after = await raw(sk.proxyPort, `GET http://sink.tool.test:${S}/after HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`, { until: completeResponse })
  t.equal(after.status, 200, 'the listener serves afterwards')
})

t.test('an h2 session whose TLS socket is ended (curl-style, no GOAWAY) frees its connection slot at once', async (t) => {
  const pki = await upstreamPki()
  const up = await startUpstream({ tls: await pki.cert('h2.tool.test') })
  t.teardown(() => up.close())
  const MAX = 8
  const sk = await startSidekey(t, `
instance_id: agent-h6
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { h2.tool.test: 127.0.0.1 }
limits: { max_connections: ${MAX}, idle_timeout: 300s }
issuers: { local: { type: local_jwt } }
tools: { h2: { match: { host: h2.tool.test, port: ${up.port} }, issuer: local } }
`)
  const ca = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
  // One h2 exchange in a fresh tunnel, then the TLS socket is ended (close_notify + FIN) as curl does at exit.
  const exchangeThenEnd = async (i: number): Promise<number> => {
    const socket = await tlsThroughTunnel(sk.proxyPort, `h2.tool.test:${up.port}`, { servername: 'h2.tool.test', ca, alpn: ['h2'] })
    const session = h2connect(`https://h2.tool.test:${up.port}`, { createConnection: () => socket })
    session.on('error', () => {})
    try {
      const stream = session.request({ ':path': `/h6/${i}` })
      const [headers] = await once(stream, 'response') as [Record<string, string | number>]
      stream.resume()
      await once(stream, 'end')
      return Number(headers[':status'])
    } finally {
      socket.end()
    }
  }
  const statuses: number[] = []
  for (let i = 0; i < 4 * MAX; i++) statuses.push(await exchangeThenEnd(i))
  t.same(statuses, Array(4 * MAX).fill(200), `${4 * MAX} tunnels in sequence past max_connections=${MAX}, each served`)
  const after = await raw(sk.proxyPort, `GET http://h2.tool.test:${up.port}/after HTTP/1.1\r\nHost: h2.tool.test\r\n\r\n`, { until: completeResponse })
  t.equal(after.status, 200, 'and the listener still serves a new connection')
  // The same with real curl, when it is installed: each call is one tunnel, one h2 exchange, then curl exits.
  if (curl.path === undefined) { t.comment(curl.skip === false ? 'curl missing' : curl.skip); if (!needBinary(t, curl)) return; return }
  for (let i = 0; i < MAX + 4; i++) {
    const { stdout } = await run(curl.path, ['-sS', '--http2', '--proxy', sk.proxyUrl, '--cacert', join(sk.caDir, 'ca.pem'), '-o', '/dev/null',
      '-w', '%{http_code} %{http_version}', '--max-time', '10', `https://h2.tool.test:${up.port}/curl/${i}`])
    t.equal(stdout, '200 2', `curl --http2 call ${i + 1} of ${MAX + 4} served over h2`)
  }
})

t.test('a slow body is cut by request_timeout; a slow reader is cut when idle, and backpressure bounds what is buffered', async (t) => {
  const sk = await startSidekey(t, `
instance_id: agent-f2
ca: { dir: {{CA_DIR}} }
resolve: { sink.tool.test: 127.0.0.1 }
limits: { headers_timeout: 2s, request_timeout: 3s, idle_timeout: 2s }
issuers: { local: { type: local_jwt } }
tools: { sink: { match: { host: sink.tool.test, port: ${S} }, issuer: local, plaintext: true } }
`)
  // Slow body: headers complete, then one byte every 200 ms of a declared 2 MiB. (Runs alongside the slow reader.)
  const started = Date.now()
  const slowBodyDone = new Promise<number>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: sk.proxyPort })
    const drip = setInterval(() => s.write('x'), 200)
    const giveUp = setTimeout(() => s.destroy(), 15_000)
    s.on('connect', () => s.write(`POST http://sink.tool.test:${S}/slow HTTP/1.1\r\nHost: sink.tool.test\r\nContent-Length: ${2 * MiB}\r\n\r\n`))
    s.on('error', () => {})
    s.on('close', () => { clearInterval(drip); clearTimeout(giveUp); resolve(Date.now() - started) })
  })
  // Slow reader: asks for 256 MiB and reads nothing. The upstream can only push what the buffers along the way
  // hold (backpressure), and the stalled connection is cut once idle. A paused client cannot see the close until
  // it reads, so the cut is observed on the proxy's side (its audit event), then confirmed by reading to the end.
  const sentBefore = sink.sent()
  const s = net.connect({ host: '127.0.0.1', port: sk.proxyPort })
  s.pause()
  s.on('error', () => {})
  s.on('connect', () => s.write(`GET http://sink.tool.test:${S}/download/256 HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`))
  await until(() => sk.log.events('credential.used').some((e) => e.path === '/download/256'), 'the download audited', 15_000)
  const cut = sk.log.events('credential.used').find((e) => e.path === '/download/256')!
  const pushed = sink.sent() - sentBefore
  let got = 0
  s.on('data', (c: Buffer) => { got += c.length })
  const closed = await new Promise<boolean>((resolve) => {
    const giveUp = setTimeout(() => resolve(false), 10_000)
    s.once('close', () => { clearTimeout(giveUp); resolve(true) })
    s.resume()
  })
  t.comment(`slow reader cut after ${Math.round(Number(cut.duration_ms))} ms (idle_timeout 2000 ms); the upstream could send ${(pushed / MiB).toFixed(1)} MiB of 256`)
  t.match(cut, { status: 200, outcome: 'upstream_error' })
  t.ok(Number(cut.duration_ms) < 2000 * 2 + 3000, 'slow reader cut within a generous bound of idle_timeout')
  t.ok(closed, 'and its connection closed')
  t.ok(got < 256 * MiB, `it never got the whole body (${(got / MiB).toFixed(1)} MiB)`)
  t.ok(pushed < 32 * MiB, 'backpressure held the upstream back')
  const slowBody = await slowBodyDone
  t.comment(`slow body closed after ${slowBody} ms (request_timeout 3000 ms)`)
  t.ok(slowBody < 3000 + 1000 + 3000, `slow body cut (${slowBody} ms)`)
})

t.test('past max_connections new connections are refused at once; existing ones keep working; it recovers', async (t) => {
  const sk = await startSidekey(t, `
instance_id: agent-f3
ca: { dir: {{CA_DIR}} }
resolve: { sink.tool.test: 127.0.0.1 }
limits: { max_connections: 16 }
issuers: { local: { type: local_jwt } }
tools: { sink: { match: { host: sink.tool.test, port: ${S} }, issuer: local, plaintext: true } }
`)
  const req = `GET http://sink.tool.test:${S}/ok HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`
  const open = async (): Promise<net.Socket> => {
    const s = net.connect({ host: '127.0.0.1', port: sk.proxyPort })
    s.on('error', () => {})
    await new Promise((resolve) => s.once('connect', resolve))
    return s
  }
  const ask = (s: net.Socket): Promise<string> => new Promise((resolve) => {
    let text = ''
    const onData = (c: Buffer): void => { text += c.toString(); if (completeResponse(text)) { s.off('data', onData); resolve(text) } }
    s.on('data', onData)
    s.once('close', () => resolve(text))
    s.write(req)
  })
  const held = await Promise.all(Array.from({ length: 16 }, open))
  t.ok((await Promise.all(held.map(ask))).every((r) => r.startsWith('HTTP/1.1 200')), '16 connections at the cap, all served')
  let refused = 0
  const flood = await Promise.all(Array.from({ length: 40 }, async () => {
    const s = await open()
    const answer = await new Promise<string>((resolve) => {
      let text = ''
      s.on('data', (c: Buffer) => { text += c.toString() })
      s.once('close', () => resolve(text))
      s.write(req)
      setTimeout(() => { s.destroy(); resolve('still open') }, 5000).unref()
    })
    if (answer === '') refused++
    return answer
  }))
  t.comment(`connection flood: ${refused} of 40 connections past max_connections=16 refused`)
  t.equal(refused, 40, 'every connection past the cap was closed without an answer')
  t.notOk(flood.includes('still open'))
  t.ok((await Promise.all(held.map(ask))).every((r) => r.startsWith('HTTP/1.1 200')), 'the existing 16 still work')
  for (const s of held.slice(0, 4)) s.destroy()
  // The proxy sees the closes on its own schedule: until then a new connection is still past the cap.
  let fresh = await raw(sk.proxyPort, req, { until: completeResponse })
  await until(async () => {
    fresh = fresh.status === 200 ? fresh : await raw(sk.proxyPort, req, { until: completeResponse })
    return fresh.status === 200
  }, 'a connection accepted below the cap')
  t.equal(fresh.status, 200, 'new connections accepted once below the cap')
  for (const s of held) s.destroy()
})

t.test('an upstream that accepts and never answers gives 504; the per-upstream cap holds and refuses the excess', async (t) => {
  const silent = await startRawUpstream(() => { /* read the request, never answer */ })
  t.teardown(() => silent.close())
  // A TLS upstream that never completes a handshake: the TCP connect succeeds, then nothing.
  const mute = net.createServer((s) => { s.on('error', () => {}) })
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve))
  const muteSockets = new Set<net.Socket>()
  mute.on('connection', (s) => { muteSockets.add(s) })
  t.teardown(() => new Promise((resolve) => { for (const s of muteSockets) s.destroy(); mute.close(resolve) }))
  const pki = await upstreamPki()
  const sk = await startSidekey(t, `
instance_id: agent-f5
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { silent.tool.test: 127.0.0.1, mute.tool.test: 127.0.0.1 }
limits: { request_timeout: 1500ms, connect_timeout: 1s, upstream_connections: 2, upstream_pending: 2 }
issuers: { local: { type: local_jwt } }
tools:
  silent: { match: { host: silent.tool.test, port: ${silent.port} }, issuer: local, plaintext: true }
  mute: { match: { host: mute.tool.test, port: ${(mute.address() as net.AddressInfo).port} }, issuer: local, http2: false }
`)
  const get = (host: string, port: number, path = '/'): Promise<Awaited<ReturnType<typeof raw>>> =>
    raw(sk.proxyPort, `GET http://${host}:${port}${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, { until: completeResponse, waitMs: 15_000 })
  const mutePort = (mute.address() as net.AddressInfo).port
  const [plain, tls] = await Promise.all([get('silent.tool.test', silent.port), get('mute.tool.test', mutePort)])
  t.equal(plain.status, 504, 'no response headers within request_timeout')
  t.equal(tls.status, 504, 'TLS handshake never finished within connect_timeout')
  t.match(plain.text, /"error":"upstream_timeout"/)
  // Six at once at an upstream that never answers: 2 connections + 2 pending are let through, 2 refused at once.
  const before = silent.connections
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => get('silent.tool.test', silent.port, `/c${i}`)))
  const codes = answers.map((a) => a.status).sort()
  t.same(codes, [503, 503, 504, 504, 504, 504], 'excess refused with 503, the rest time out')
  t.match(answers.find((a) => a.status === 503)?.text, /"error":"overloaded"/)
  t.ok(silent.connections - before <= 4, `the upstream saw at most connections + retries (${silent.connections - before})`)
})

t.test('max_connection_lifetime: a keep-alive connection past its lifetime is closed after its current response', async (t) => {
  const sk = await startSidekey(t, `
instance_id: agent-lifetime
ca: { dir: {{CA_DIR}} }
resolve: { sink.tool.test: 127.0.0.1 }
limits: { max_connection_lifetime: 1s }
issuers: { local: { type: local_jwt } }
tools: { sink: { match: { host: sink.tool.test, port: ${S} }, issuer: local, plaintext: true } }
`)
  const s = net.connect({ host: '127.0.0.1', port: sk.proxyPort })
  s.on('error', () => {})
  let text = ''
  s.on('data', (c: Buffer) => { text += c.toString() })
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()))
  const ask = async (path: string): Promise<string> => {
    const from = text.length
    s.write(`GET http://sink.tool.test:${S}${path} HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`)
    await until(() => completeResponse(text.slice(from)))
    return text.slice(from)
  }
  t.match(await ask('/first'), /^HTTP\/1\.1 200[\s\S]*connection: keep-alive/i)
  await new Promise((resolve) => setTimeout(resolve, 1100)) // the lifetime is what is under test: let it pass
  t.match(await ask('/second'), /^HTTP\/1\.1 200[\s\S]*connection: close/i, 'served, then told to reconnect')
  await closed
  t.pass('closed by the proxy')
})

t.test('memory overload: at 90 % of the heap limit new requests and tunnels get 503 and a closed connection', async (t) => {
  const { parseConfig } = await import('../../src/config/load.js')
  const { ProxyListener } = await import('../../src/proxy/ingress/listener.js')
  const { Router } = await import('../../src/proxy/router.js')
  const { createLookup } = await import('../../src/net/resolver.js')
  const config = parseConfig(`instance_id: overload
issuers: { local: { type: local_jwt } }
tools: { sink: { match: { host: sink.tool.test, port: ${S} }, issuer: local, plaintext: true } }
resolve: { sink.tool.test: 127.0.0.1 }
`, 'overload.yaml', {})
  const resolver = { pins: config.resolve, blockPrivate: true }
  const events: unknown[] = []
  const upstream = new Agent()
  t.teardown(() => upstream.close())
  const runtime = {
    config,
    router: new Router(config.tools),
    upstream,
    lookup: createLookup(resolver),
    resolver,
    ownPorts: new Set<number>(),
    audit: { emit: (e: unknown) => { events.push(e) } },
    credentials: { current: () => undefined, retryAfterSeconds: () => 1 },
    leaves: {},
    locks: { lockOf: () => undefined },
  } as unknown as import('../../src/proxy/runtime.js').Runtime
  let ratio = 0.5
  const listener = new ProxyListener(() => runtime, { heapUsedRatio: () => ratio })
  const { port } = await listener.listen('127.0.0.1', 0)
  t.teardown(() => listener.close(0))
  const get = `GET http://sink.tool.test:${S}/ HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`
  t.equal((await raw(port, get, { until: completeResponse })).status, 503, 'normal service (no credential in this stub: 503 credential_unavailable)')
  ratio = 0.95
  const refused = await raw(port, get)
  t.equal(refused.status, 503)
  t.match(refused.text, /"error":"overloaded"/)
  t.ok(refused.closed, 'connection closed')
  const tunnel = await raw(port, `CONNECT sink.tool.test:${S} HTTP/1.1\r\nHost: sink.tool.test\r\n\r\n`)
  t.equal(tunnel.status, 503)
  t.ok(tunnel.closed)
  ratio = 0.5
  t.match((await raw(port, get, { until: completeResponse })).text, /credential_unavailable/, 'back to normal below the mark')
})
