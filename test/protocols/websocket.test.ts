import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import { ProxyAgent, WebSocket } from 'undici'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { upstreamPki } from '../helpers/upstream.js'
import { startSidekey, tick } from '../helpers/sidekey.js'
import { auditLine, connectTo, encodeFrame, FrameReader, handshake, readAll, readHead, startWsUpstream } from './helpers.js'
import { connectTunnel } from '../helpers/connect.js'

const pki = await upstreamPki()
const tlsWs = await startWsUpstream({ tls: await pki.cert('ws.tool.test') })
const plainWs = await startWsUpstream()
t.teardown(() => tlsWs.close())
t.teardown(() => plainWs.close())

const config = `
instance_id: agent-ws
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve:
  ws.tool.test: 127.0.0.1
  wsplain.tool.test: 127.0.0.1
  broken.tool.test: 127.0.0.1
issuers:
  local: { type: local_jwt, ttl: 10m, issuer: https://sidekey.test }
  missing: { type: file, path: /nonexistent/sidekey-test-token }
tools:
  ws:
    match: { host: ws.tool.test, port: ${tlsWs.port} }
    issuer: local
    scopes: [realtime]
    placeholder: sidekey
  ws-post-only:
    match: { host: ws.tool.test, port: ${tlsWs.port}, path_prefix: /post-only/, methods: [POST] }
    issuer: local
    scopes: [post]
  wsplain:
    match: { host: wsplain.tool.test, port: ${plainWs.port} }
    issuer: local
    scopes: [stream]
    plaintext: true
    placeholder: sidekey
  broken:
    match: { host: broken.tool.test, port: ${plainWs.port} }
    issuer: missing
    plaintext: true
`
const sk = await startSidekey(t, config)
const caPem = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
const jwks = createRemoteJWKSet(new URL(`${sk.adminUrl}/.well-known/jwks.json`))

async function toolSawJwt (t: Test, authorization: string | undefined, tool: string): Promise<string> {
  t.type(authorization, 'string', 'the upstream got an Authorization header')
  t.not(authorization, 'Bearer sidekey', 'never the placeholder')
  const { payload } = await jwtVerify(String(authorization).replace(/^Bearer /, ''), jwks, { issuer: 'https://sidekey.test' })
  t.equal(payload.tool, tool)
  return String(payload.jti)
}

/** Opens an undici WebSocket, collects its messages, and resolves once `count` have arrived. */
function messages (ws: WebSocket, count: number): Promise<string[]> {
  const got: string[] = []
  return new Promise((resolve, reject) => {
    ws.addEventListener('message', (e) => {
      got.push(typeof e.data === 'string' ? e.data : Buffer.from(e.data as ArrayBuffer).toString())
      if (got.length === count) resolve(got)
    })
    ws.addEventListener('error', () => reject(new Error('websocket error')))
    ws.addEventListener('close', () => reject(new Error(`closed after ${got.length} messages`)))
  })
}

t.test('wss:// through an intercepted TLS tunnel (undici WebSocket + ProxyAgent): credential injected, data both ways, audited at the 101', async (t) => {
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: caPem } })
  t.teardown(() => agent.close())
  const before = tlsWs.seen.length
  const ws = new WebSocket(`wss://ws.tool.test:${tlsWs.port}/v1/realtime?model=x`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' }, protocols: ['chat'] })
  t.teardown(() => ws.close())
  ws.binaryType = 'arraybuffer'
  const got = messages(ws, 3)
  await once(ws as unknown as EventTarget, 'open')
  t.equal(ws.protocol, 'chat', 'the upstream chose the subprotocol: Sec-WebSocket-* went through both ways')
  ws.send('ping-1')
  ws.send(new Uint8Array(Buffer.from('binary-2')))
  t.same(await got, ['hello', 'echo:ping-1', 'echo:binary-2'])
  const seen = tlsWs.seen[before]!
  t.equal(seen.url, '/v1/realtime?model=x')
  const jti = await toolSawJwt(t, seen.headers.authorization, 'ws')
  t.notOk(seen.headers['proxy-authorization'])
  await tick()
  const used = sk.log.events('credential.used').filter((e) => e.tool === 'ws' && e.status === 101)
  t.equal(used.length, 1, 'one credential.used, written at the 101 while the socket is still open')
  t.match(used[0], { credential_id: jti, method: 'GET', host: 'ws.tool.test', path: '/v1/realtime', placeholder: 'stripped' })
})

t.test('ws:// through a plain CONNECT tunnel and as an absolute-form request', async (t) => {
  for (const proxyTunnel of [true, false]) {
    const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel })
    t.teardown(() => agent.close())
    const before = plainWs.seen.length
    const ws = new WebSocket(`ws://wsplain.tool.test:${plainWs.port}/stream`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
    t.teardown(() => ws.close())
    const got = messages(ws, 2)
    await once(ws as unknown as EventTarget, 'open')
    ws.send(`via ${proxyTunnel ? 'tunnel' : 'absolute-form'}`)
    t.same(await got, ['hello', `echo:via ${proxyTunnel ? 'tunnel' : 'absolute-form'}`])
    await toolSawJwt(t, plainWs.seen[before]!.headers.authorization, 'wsplain')
  }
})

t.test('a large message crosses both ways intact (backpressure, no loss)', async (t) => {
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: caPem } })
  t.teardown(() => agent.close())
  const ws = new WebSocket(`wss://ws.tool.test:${tlsWs.port}/big`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
  t.teardown(() => ws.close())
  ws.binaryType = 'arraybuffer'
  const big = Buffer.alloc(4 * 1024 * 1024, 'abcdefgh')
  const got = new Promise<Buffer>((resolve, reject) => {
    ws.addEventListener('message', (e) => { if (typeof e.data !== 'string') resolve(Buffer.from(e.data as ArrayBuffer)) })
    ws.addEventListener('close', () => reject(new Error('closed')))
  })
  await once(ws as unknown as EventTarget, 'open')
  ws.send(big)
  const echoed = await got
  t.equal(echoed.length, big.length + 5)
  t.ok(echoed.subarray(5).equals(big))
})

t.test('a refused upgrade returns the upstream answer, and the refusal is audited', async (t) => {
  const s = await connectTo(sk.proxyPort)
  t.teardown(() => s.destroy())
  s.write(handshake(`http://ws.tool.test:${tlsWs.port}/refuse`, `ws.tool.test:${tlsWs.port}`, { Authorization: 'Bearer sidekey' }))
  const head = await readHead(s)
  t.equal(head.status, 403)
  t.equal(head.headers['x-upstream'], 'yes')
  t.equal((await readAll(s, head.rest)).toString(), '{"error":"nope"}')
  await toolSawJwt(t, tlsWs.seen.at(-1)!.headers.authorization, 'ws')
  t.ok(await auditLine(sk.log, (e) => e.event === 'credential.used' && e.tool === 'ws' && e.status === 403 && e.path === '/refuse'))
})

t.test('upgrades follow the credential rules: 403 unmatched and method, 503 without credential, 421 off-target in a tunnel', async (t) => {
  const ask = async (request: string, proxyTarget?: string): Promise<{ status: number, body: string }> => {
    const s = proxyTarget === undefined ? await connectTo(sk.proxyPort) : await connectTunnel(sk.proxyPort, proxyTarget)
    t.teardown(() => s.destroy())
    s.write(request)
    const head = await readHead(s)
    return { status: head.status, body: (await readAll(s, head.rest)).toString() }
  }
  const seenBefore = tlsWs.seen.length + plainWs.seen.length
  const unmatched = await ask(handshake(`http://elsewhere.test:${plainWs.port}/`, `elsewhere.test:${plainWs.port}`))
  t.equal(unmatched.status, 403)
  t.match(JSON.parse(unmatched.body), { error: 'egress_denied' })
  const method = await ask(handshake(`http://ws.tool.test:${tlsWs.port}/post-only/x`, `ws.tool.test:${tlsWs.port}`))
  t.equal(method.status, 403)
  t.match(JSON.parse(method.body), { error: 'method_denied', tool: 'ws-post-only' })
  const noCredential = await ask(handshake(`http://broken.tool.test:${plainWs.port}/`, `broken.tool.test:${plainWs.port}`))
  t.equal(noCredential.status, 503)
  t.match(JSON.parse(noCredential.body), { error: 'credential_unavailable', tool: 'broken' })
  const misdirected = await ask(handshake('/x', `other.tool.test:${plainWs.port}`, { Authorization: 'Bearer sidekey' }), `wsplain.tool.test:${plainWs.port}`)
  t.equal(misdirected.status, 421)
  t.equal(tlsWs.seen.length + plainWs.seen.length, seenBefore, 'no refused upgrade reached an upstream')
  t.ok(sk.log.events('credential.used').some((e) => e.tool === 'ws-post-only' && e.status === 403 && e.outcome === 'method_denied'))
  t.ok(sk.log.events('credential.used').some((e) => e.tool === 'broken' && e.status === 503))
})

t.test('a raw client sees the upstream 101 and frames both ways; the upstream greeting sent with the 101 is not lost', async (t) => {
  const s = await connectTo(sk.proxyPort)
  t.teardown(() => s.destroy())
  s.write(handshake(`http://wsplain.tool.test:${plainWs.port}/raw`, `wsplain.tool.test:${plainWs.port}`, { Authorization: 'Bearer sidekey' }))
  const head = await readHead(s)
  t.equal(head.status, 101)
  t.equal(head.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
  t.match(head.headers.upgrade, /websocket/i)
  const reader = new FrameReader()
  const frames = reader.push(head.rest)
  s.write(encodeFrame(1, Buffer.from('raw'), true))
  s.resume()
  while (frames.length < 2) frames.push(...reader.push((await once(s, 'data'))[0] as Buffer))
  t.same(frames.map((f) => f.payload.toString()), ['hello', 'echo:raw'])
  s.write(encodeFrame(8, Buffer.from([0x03, 0xe8]), true))
  await once(s, 'close')
})

t.test('an idle WebSocket is closed after limits.idle_timeout', async (t) => {
  const idle = await startSidekey(t, config.replace('instance_id: agent-ws', 'instance_id: agent-ws-idle\nlimits: { idle_timeout: 300ms }'))
  const s = await connectTo(idle.proxyPort)
  t.teardown(() => s.destroy())
  s.write(handshake(`http://wsplain.tool.test:${plainWs.port}/idle`, `wsplain.tool.test:${plainWs.port}`))
  const head = await readHead(s)
  t.equal(head.status, 101)
  s.resume()
  await once(s, 'close')
  t.pass('closed by the proxy while neither side spoke')
})
