import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { connect as h2connect, constants, type ClientHttp2Session } from 'node:http2'
import { once } from 'node:events'
import { ProxyAgent, request } from 'undici'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { upstreamPki } from '../helpers/upstream.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { auditLine } from './helpers.js'
import { sidekeyCa, tlsThroughTunnel } from '../helpers/connect.js'
import { FLAG, FRAME, frame, getBlock, literalField, rawH2 as rawH2Tunnel, startH2Upstream } from './h2-helpers.js'

const run = promisify(execFile)
const pki = await upstreamPki()
const h2Up = await startH2Upstream(await pki.cert('h2.tool.test'))
const h1Up = await startH2Upstream(await pki.cert('h1.tool.test'))
t.teardown(() => h2Up.close())
t.teardown(() => h1Up.close())

const config = (extra = ''): string => `
instance_id: agent-h2
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve:
  h2.tool.test: 127.0.0.1
  h1.tool.test: 127.0.0.1
issuers:
  local: { type: local_jwt, ttl: 10m, issuer: https://sidekey.test }
tools:
  h2api:
    match: { host: h2.tool.test, port: ${h2Up.port} }
    issuer: local
    scopes: [h2]
    placeholder: sidekey
  h1api:
    match: { host: h1.tool.test, port: ${h1Up.port} }
    issuer: local
    scopes: [h1]
    http2: false
${extra}`
const sk = await startSidekey(t, config())
const caFile = join(sk.caDir, 'ca.pem')
const caPem = readFileSync(caFile, 'utf8')
const jwks = createRemoteJWKSet(new URL(`${sk.adminUrl}/.well-known/jwks.json`))

async function sawJwt (t: Test, authorization: unknown, tool: string): Promise<void> {
  t.not(authorization, 'Bearer sidekey', 'never the placeholder')
  const { payload } = await jwtVerify(String(authorization).replace(/^Bearer /, ''), jwks, { issuer: 'https://sidekey.test' })
  t.equal(payload.tool, tool, 'the upstream verified the injected JWT')
}

/** A node:http2 client session to `host:port` through a CONNECT tunnel to the proxy, ALPN h2. */
async function h2Session (t: Test, proxy: RunningSidekey, host: string, port: number): Promise<ClientHttp2Session> {
  const socket = await tlsThroughTunnel(proxy.proxyPort, `${host}:${port}`, { servername: host, ca: sidekeyCa(proxy.caDir), alpn: ['h2'] })
  t.equal(socket.alpnProtocol, 'h2', 'the proxy chose h2 in ALPN')
  const session = h2connect(`https://${host}:${port}`, { createConnection: () => socket })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return session
}

async function h2Request (session: ClientHttp2Session, headers: Record<string, string>, body?: Buffer): Promise<{ status: number, body: string }> {
  const stream = session.request(headers, { endStream: body === undefined })
  if (body !== undefined) stream.end(body)
  const [response] = await once(stream, 'response') as [Record<string, string | number>]
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return { status: Number(response[':status']), body: Buffer.concat(chunks).toString() }
}

t.test('HTTP/2 to upstreams: a tool with http2 (default) is reached over h2, a tool with http2: false over HTTP/1.1', async (t) => {
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: caPem } })
  t.teardown(() => agent.close())
  const a = await request(`https://h2.tool.test:${h2Up.port}/v1/models`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
  t.match(await a.body.json(), { httpVersion: '2.0', url: '/v1/models' })
  const seen = h2Up.seen.at(-1)!
  t.equal(seen.httpVersion, '2.0')
  t.equal(seen.headers[':authority'], `h2.tool.test:${h2Up.port}`)
  await sawJwt(t, seen.headers.authorization, 'h2api')
  const b = await request(`https://h1.tool.test:${h1Up.port}/v1/models`, { dispatcher: agent })
  t.match(await b.body.json(), { httpVersion: '1.1' })
  await sawJwt(t, h1Up.seen.at(-1)!.headers.authorization, 'h1api')
})

t.test('curl --http2 through the proxy with its CA: h2 on both legs, credential injected, body carried', async (t) => {
  const { stdout } = await run('curl', ['-sS', '--http2', '--proxy', sk.proxyUrl, '--cacert', caFile, '-H', 'Authorization: Bearer sidekey',
    '-d', 'hello h2', '-w', '\n%{http_version}', `https://h2.tool.test:${h2Up.port}/v1/chat`])
  const [body, version] = stdout.split('\n')
  t.equal(version, '2', 'curl spoke h2 to sidekey')
  t.match(JSON.parse(body!), { httpVersion: '2.0', url: '/v1/chat', bytes: 8 })
  const seen = h2Up.seen.at(-1)!
  t.equal(seen.body.toString(), 'hello h2')
  await sawJwt(t, seen.headers.authorization, 'h2api')
  const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.tool === 'h2api' && e.path === '/v1/chat')
  t.match(used, { method: 'POST', status: 200, placeholder: 'stripped', host: 'h2.tool.test' })
})

t.test('node:http2 client through a CONNECT tunnel: concurrent streams, a streamed body, 421 for another :authority, 400 stays on its stream', async (t) => {
  const session = await h2Session(t, sk, 'h2.tool.test', h2Up.port)
  const authority = `h2.tool.test:${h2Up.port}`
  const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => h2Request(session, { ':path': `/many/${i}`, ':authority': authority, authorization: 'Bearer sidekey' })))
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200])
  t.same(answers.map((a) => JSON.parse(a.body).url), ['/many/1', '/many/2', '/many/3', '/many/4', '/many/5'])
  // A body without content-length: h2 frames it; sidekey must still stream it upstream.
  const streamed = await h2Request(session, { ':method': 'POST', ':path': '/upload', ':authority': authority }, Buffer.alloc(300_000, 'x'))
  t.match(JSON.parse(streamed.body), { url: '/upload', bytes: 300_000 })
  const before = h2Up.seen.length
  const misdirected = await h2Request(session, { ':path': '/x', ':authority': `h1.tool.test:${h1Up.port}`, authorization: 'Bearer sidekey' })
  t.equal(misdirected.status, 421)
  t.match(JSON.parse(misdirected.body), { error: 'misdirected_request' })
  const underscore = await h2Request(session, { ':path': '/x', ':authority': authority, x_api_key: 'k' })
  t.equal(underscore.status, 400)
  t.equal(h2Up.seen.length, before, 'refused streams reached no upstream')
  const after = await h2Request(session, { ':path': '/still-open', ':authority': authority })
  t.equal(after.status, 200, 'the session survives refused streams')
  t.ok(await auditLine(sk.log, (e) => e.event === 'egress.denied' && e.reason === 'misdirected' && e.requested === `h1.tool.test:${h1Up.port}` && typeof e.request_id === 'string' && e.request_id !== ''))
})

t.test('http2.enabled: false offers only http/1.1', async (t) => {
  const off = await startSidekey(t, config('http2: { enabled: false }'))
  const { stdout } = await run('curl', ['-sS', '--http2', '--proxy', off.proxyUrl, '--cacert', join(off.caDir, 'ca.pem'), '-w', '\n%{http_version}',
    `https://h2.tool.test:${h2Up.port}/off`])
  t.equal(stdout.split('\n')[1], '1.1')
})

/** Opens a raw h2 connection through the proxy, returns it with a log of what the server sent. */
const rawH2 = (t: Test): ReturnType<typeof rawH2Tunnel> => rawH2Tunnel(t, sk.proxyPort, 'h2.tool.test', h2Up.port, caPem)

async function stillServes (t: Test): Promise<void> {
  const session = await h2Session(t, sk, 'h2.tool.test', h2Up.port)
  const res = await h2Request(session, { ':path': '/after-flood', ':authority': `h2.tool.test:${h2Up.port}` })
  t.equal(res.status, 200, 'a new agent session is served after the flood')
}

t.test('rapid reset: a session that resets its streams before their answer is closed, upstream work is cancelled', async (t) => {
  const { socket, log, closed } = await rawH2(t)
  const block = getBlock(`h2.tool.test:${h2Up.port}`, '/hang')
  const cancelledBefore = h2Up.cancelled
  const hangBefore = h2Up.seen.filter((s) => s.url === '/hang').length
  let sent = 0
  // Bounded: far more than the limit, written in batches so the proxy gets to act between them.
  for (let batch = 0; batch < 20 && socket.writable; batch++) {
    const frames: Buffer[] = []
    for (let i = 0; i < 50; i++, sent++) {
      const id = 1 + 2 * sent
      frames.push(frame(FRAME.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, id, block), frame(FRAME.RST_STREAM, 0, id, Buffer.from([0, 0, 0, constants.NGHTTP2_CANCEL])))
    }
    socket.write(Buffer.concat(frames))
    await new Promise((resolve) => setImmediate(resolve))
  }
  await closed
  t.ok(log.types.includes(FRAME.GOAWAY), 'the proxy sent GOAWAY')
  t.ok(log.goawayCodes.includes(constants.NGHTTP2_ENHANCE_YOUR_CALM), `GOAWAY says ENHANCE_YOUR_CALM (${log.goawayCodes.join(',')})`)
  t.ok(sent >= 100, `the flood was cut after ${sent} resets`)
  await stillServes(t)
  // Every reset stream that reached the upstream is cancelled there too: none is left holding an upstream stream.
  const hung = (): number => h2Up.seen.filter((s) => s.url === '/hang').length - hangBefore
  while (h2Up.cancelled - cancelledBefore < hung()) await once(h2Up.events, 'cancelled')
  t.equal(h2Up.cancelled - cancelledBefore, hung(), `${hung()} upstream requests reached, all cancelled`)
})

t.test('CONTINUATION flood: a header block that never ends is cut off, the proxy keeps serving', async (t) => {
  const { socket, log, closed } = await rawH2(t)
  socket.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, getBlock(`h2.tool.test:${h2Up.port}`, '/cont')))
  const fragment = frame(FRAME.CONTINUATION, 0, 1, literalField('x-flood', 'a'.repeat(100)))
  let sent = 0
  for (let batch = 0; batch < 100 && socket.writable; batch++) {
    socket.write(Buffer.concat(Array.from({ length: 100 }, () => fragment)))
    sent += 100
    await new Promise((resolve) => setImmediate(resolve))
  }
  await closed
  t.ok(log.types.includes(FRAME.GOAWAY), `the proxy sent GOAWAY (after ${sent} CONTINUATION frames written)`)
  t.notOk(h2Up.seen.some((s) => s.url === '/cont'), 'the unfinished request never went upstream')
  await stillServes(t)
})
