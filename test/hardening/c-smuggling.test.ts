// Threat model, the agent, smuggling: no request smuggling or desync between agent, sidekey and upstream.
import t from 'tap'
import { startSidekey } from '../helpers/sidekey.js'
import { headerValues, raw, startRawUpstream, type RawResponder, type WireRequest } from './helpers.js'
import { until } from '../helpers/until.js'
import { auditLine } from '../protocols/helpers.js'
import { completeResponse } from './tunnel-client.js'

const up = await startRawUpstream()
// upstreams answering with broken framing, each on its own port so one test cannot poison another.
const bad: Record<string, string> = {
  'cl-te': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'two-responses': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled',
  'empty-cl': 'HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok',
  'empty-name': 'HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 2\r\n\r\nok',
  'two-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 8\r\n\r\nok',
}
const badUps = Object.fromEntries(await Promise.all(Object.entries(bad).map(async ([name, answer]) => {
  // The first request gets the bad answer; every later one a clean "fresh".
  let served = false
  const responder: RawResponder = (_req, socket) => {
    socket.write(served ? 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh' : answer)
    served = true
  }
  return [name, await startRawUpstream(responder)] as const
})))
t.teardown(async () => { await up.close(); await Promise.all(Object.values(badUps).map((u) => u.close())) })

const P = up.port
const sk = await startSidekey(t, `
instance_id: agent-c
ca: { dir: {{CA_DIR}} }
resolve: { raw.tool.test: 127.0.0.1, raw2.tool.test: 127.0.0.1, ${Object.keys(bad).map((n) => `${n}.tool.test: 127.0.0.1`).join(', ')} }
limits: { replay_body_bytes: 1024 }
issuers: { local: { type: local_jwt } }
tools:
  raw: { match: { host: raw.tool.test, port: ${P} }, issuer: local, audience: https://raw, plaintext: true }
  raw2: { match: { host: raw2.tool.test, port: ${P} }, issuer: local, audience: https://raw2, plaintext: true }
${Object.entries(badUps).map(([n, u]) => `  ${n}: { match: { host: ${n}.tool.test, port: ${u.port} }, issuer: local, plaintext: true }`).join('\n')}
`)

const HEAD = `POST http://raw.tool.test:${P}/c HTTP/1.1\r\nHost: raw.tool.test:${P}\r\n`

t.test('ambiguous framing and malformed header lines are 400, the connection is closed, nothing reaches upstream', async (t) => {
  const cases: Record<string, string> = {
    'CL+TE': `${HEAD}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    'TE+CL': `${HEAD}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
    'duplicate CL': `${HEAD}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
    'conflicting CL': `${HEAD}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
    'CL list': `${HEAD}Content-Length: 5, 5\r\n\r\nhello`,
    'CL +2': `${HEAD}Content-Length: +2\r\n\r\nhi`,
    'CL -1': `${HEAD}Content-Length: -1\r\n\r\n`,
    'CL hex': `${HEAD}Content-Length: 0x5\r\n\r\nhello`,
    'TE not ending in chunked': `${HEAD}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`,
    'TE identity': `${HEAD}Transfer-Encoding: identity\r\n\r\n`,
    xchunked: `${HEAD}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
    'chunked with junk': `${HEAD}Transfer-Encoding: chunked-false\r\n\r\n0\r\n\r\n`,
    'duplicate TE': `${HEAD}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    'obs-fold': `${HEAD}X-A: a\r\n b\r\n\r\n`,
    'obs-fold TE': `${HEAD}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`,
    'space before colon': `${HEAD}Content-Length : 5\r\n\r\nhello`,
    'tab before colon': `${HEAD}Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n`,
    'bare CR in value': `${HEAD}X-A: a\rb\r\n\r\n`,
    'bare LF line ends': `POST http://raw.tool.test:${P}/c HTTP/1.1\nHost: raw.tool.test\nContent-Length: 0\n\n`,
    'NUL in value': `${HEAD}X-A: a\u0000b\r\n\r\n`,
    'NUL in name': `${HEAD}X-\u0000A: b\r\n\r\n`,
    'CR LF CR X': `${HEAD}X-A: a\r\n\rX: y\r\n\r\n`,
    'bad chunk size': `${HEAD}Transfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n`,
    'chunk size overflow': `${HEAD}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n`,
    'space in method': `PO ST http://raw.tool.test:${P}/ HTTP/1.1\r\nHost: raw.tool.test\r\n\r\n`,
    'HTTP/1.2': `GET http://raw.tool.test:${P}/ HTTP/1.2\r\nHost: raw.tool.test\r\n\r\n`,
    'HTTP/1.1 without Host': `GET http://raw.tool.test:${P}/ HTTP/1.1\r\nX-A: b\r\n\r\n`,
  }
  const before = up.connections
  for (const [name, bytes] of Object.entries(cases)) {
    const r = await raw(sk.proxyPort, bytes)
    t.equal(r.status, 400, name)
    t.ok(r.closed, `${name}: closed`)
    t.equal(r.text.match(/HTTP\/1\.1 \d{3}/g)?.length, 1, `${name}: one answer`)
  }
  t.equal(up.connections, before, 'no upstream connection was opened')
})

t.test('the upstream sees exactly one framing, generated by sidekey, and no byte more', async (t) => {
  const send = async (framing: string, body: string): Promise<WireRequest> => {
    const before = up.requests.length
    const r = await raw(sk.proxyPort, `${HEAD}${framing}\r\n${body}`, { until: completeResponse })
    t.equal(r.status, 200)
    return up.requests[before]!
  }
  const big = 'x'.repeat(4000) // larger than replay_body_bytes: streamed, not kept
  const cases: Array<[string, string, string, 'content-length' | 'chunked' | 'none', string]> = [
    ['small content-length', 'Content-Length: 5\r\n', 'hello', 'content-length', 'hello'],
    ['streamed content-length', `Content-Length: ${big.length}\r\n`, big, 'content-length', big],
    ['chunked with extensions and trailers', 'Transfer-Encoding: chunked\r\nTrailer: X-T\r\n', '5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n', 'chunked', 'hello world'],
    ['empty content-length', 'Content-Length: 0\r\n', '', 'content-length', ''],
    ['no body on a POST (undici states the empty length)', '', '', 'content-length', ''],
  ]
  for (const [name, framing, body, expected, payload] of cases) {
    const seen = await send(framing, body)
    t.equal(seen.framing, expected, name)
    const cl = headerValues(seen, 'content-length')
    const te = headerValues(seen, 'transfer-encoding')
    t.equal(cl.length + te.length, expected === 'none' ? 0 : 1, `${name}: one of Content-Length / Transfer-Encoding, once`)
    if (expected === 'content-length') t.same(cl, [String(Buffer.byteLength(payload))])
    if (expected === 'chunked') t.same(te, ['chunked'])
    t.equal(seen.body.toString(), payload, `${name}: payload intact`)
    t.notMatch(seen.bytes.toString('latin1'), /ext=1|X-T/, 'agent chunk extensions and trailers are not relayed')
    t.equal(up.pending(), 0, `${name}: no stray bytes after the request`)
  }
})

t.test('hop-by-hop headers are removed in both directions', async (t) => {
  const hop = await startRawUpstream((_req, socket) => {
    socket.write('HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n' +
      'Proxy-Connection: keep-alive\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-End-To-End: kept\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n')
  })
  t.teardown(() => hop.close())
  const sk2 = await startSidekey(t, `
instance_id: agent-c3
ca: { dir: {{CA_DIR}} }
resolve: { hop.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools: { hop: { match: { host: hop.tool.test, port: ${hop.port} }, issuer: local, plaintext: true } }
`)
  const r = await raw(sk2.proxyPort, `GET http://hop.tool.test:${hop.port}/ HTTP/1.1\r\nHost: hop.tool.test\r\n` +
    'Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nProxy-Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nTrailer: X-T\r\n' +
    'Proxy-Authorization: Basic eDp5\r\nProxy-Authenticate: Basic\r\nX-End-To-End: kept\r\n\r\n', { until: (s) => s.endsWith('0\r\n\r\n') || completeResponse(s) })
  t.equal(r.status, 200)
  const seen = hop.requests[0]!
  for (const name of ['x-hop', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'proxy-authorization', 'proxy-authenticate']) {
    t.same(headerValues(seen, name), [], `request: ${name} removed`)
  }
  t.notMatch(headerValues(seen, 'connection').join(','), /x-hop/i)
  t.same(headerValues(seen, 'x-end-to-end'), ['kept'])
  const head = r.text.slice(0, r.text.indexOf('\r\n\r\n')).toLowerCase()
  for (const line of ['x-resp-hop', 'proxy-authenticate', 'proxy-connection', 'trailer:', 'upgrade', 'keep-alive: timeout=5']) {
    t.notOk(head.includes(line), `response: ${line} removed`)
  }
  t.ok(head.includes('x-end-to-end: kept'))
})

t.test('a malformed upstream response is 502 and its connection is never reused', async (t) => {
  for (const [name, u] of Object.entries(badUps)) {
    const url = `http://${name}.tool.test:${u.port}/`
    const first = await raw(sk.proxyPort, `GET ${url} HTTP/1.1\r\nHost: ${name}.tool.test\r\n\r\n`, { until: completeResponse })
    const second = await raw(sk.proxyPort, `GET ${url} HTTP/1.1\r\nHost: ${name}.tool.test\r\n\r\n`, { until: completeResponse })
    if (name === 'two-responses') {
      // The first response is well-formed and relayed; the bytes after it must not become the next answer.
      t.equal(first.status, 200, name)
    } else {
      t.equal(first.status, 502, name)
      // A generic body: the error, the tool, the request id and at most a fixed hint, never the upstream's bytes.
      const body = JSON.parse(first.text.slice(first.text.indexOf('\r\n\r\n') + 4)) as Record<string, string>
      t.same(Object.keys(body).filter((k) => k !== 'detail').sort(), ['error', 'request_id', 'tool'])
      if (body.detail !== undefined) t.match(body.detail, /^upstream [a-z ]+$/)
    }
    t.notMatch(second.text, /smuggled/, `${name}: no desync`)
    t.equal(second.status, 200, `${name}: the next request is answered afresh`)
    t.match(second.text, /fresh$/)
    t.equal(u.connections, 2, `${name}: a new upstream connection for the next request`)
  }
})

t.test('pipelined requests to different hosts are each judged on their own', async (t) => {
  const before = up.requests.length
  const pair = (a: string, b: string): string => `GET http://${a}:${P}/one HTTP/1.1\r\nHost: ${a}\r\n\r\nGET http://${b}:${P}/two HTTP/1.1\r\nHost: ${b}\r\n\r\n`
  const twoAnswers = (s: string): boolean => (s.match(/HTTP\/1\.1 \d{3}/g)?.length ?? 0) >= 2 && completeResponse(s.slice(s.lastIndexOf('HTTP/1.1 ')))
  const allowedThenDenied = await raw(sk.proxyPort, pair('raw.tool.test', 'evil.test'), { until: twoAnswers })
  t.same(allowedThenDenied.text.match(/HTTP\/1\.1 (\d{3})/g), ['HTTP/1.1 200', 'HTTP/1.1 403'])
  const deniedThenAllowed = await raw(sk.proxyPort, pair('evil.test', 'raw.tool.test'), { until: twoAnswers })
  t.same(deniedThenAllowed.text.match(/HTTP\/1\.1 (\d{3})/g), ['HTTP/1.1 403', 'HTTP/1.1 200'])
  t.same(up.requests.slice(before).map((r) => r.line), ['GET /one HTTP/1.1', 'GET /two HTTP/1.1'], 'only the allowed requests went out')
  // Two tools on one address and port: each request carries its own tool's credential, on its own pool.
  const tools = await raw(sk.proxyPort, pair('raw.tool.test', 'raw2.tool.test'), { until: twoAnswers })
  t.same(tools.text.match(/HTTP\/1\.1 (\d{3})/g), ['HTTP/1.1 200', 'HTTP/1.1 200'])
  const [one, two] = up.requests.slice(-2) as [WireRequest, WireRequest]
  const aud = (r: WireRequest): unknown => (JSON.parse(Buffer.from(headerValues(r, 'authorization')[0]!.split('.')[1]!, 'base64url').toString()) as { aud: unknown }).aud
  t.same([aud(one), aud(two)], ['https://raw', 'https://raw2'])
  t.not(one.connection, two.connection, 'the pool is keyed by host: never one socket for two tools')
})

t.test('header names with underscores are refused', async (t) => {
  const before = up.connections + up.requests.length
  for (const name of ['X_Api_Key', 'x_api_key', '_', 'Authorization_']) {
    const r = await raw(sk.proxyPort, `GET http://raw.tool.test:${P}/ HTTP/1.1\r\nHost: raw.tool.test\r\n${name}: v\r\n\r\n`)
    t.equal(r.status, 400, name)
    t.ok(r.closed)
  }
  t.equal(up.connections + up.requests.length, before)
})

t.test('oversized chunk extensions, headers past the byte limit or the count limit are refused', async (t) => {
  const before = up.requests.length
  const ext = await raw(sk.proxyPort, `${HEAD}Transfer-Encoding: chunked\r\n\r\n5;${'a'.repeat(20_000)}\r\nhello\r\n0\r\n\r\n`)
  t.equal(ext.status, 400, 'chunk extension')
  t.ok(ext.closed)
  const big = await raw(sk.proxyPort, `GET http://raw.tool.test:${P}/ HTTP/1.1\r\nHost: raw.tool.test\r\nX-Big: ${'b'.repeat(17_000)}\r\n\r\n`)
  t.equal(big.status, 431, 'header bytes')
  t.ok(big.closed)
  const headers = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: ${i}\r\n`).join('')
  const many = await raw(sk.proxyPort, `GET http://raw.tool.test:${P}/ HTTP/1.1\r\nHost: raw.tool.test\r\n${headers(100)}\r\n`)
  t.equal(many.status, 431, '101 header fields')
  t.ok(many.closed)
  t.equal(up.requests.length, before, 'none of them went out')
  const limit = await raw(sk.proxyPort, `GET http://raw.tool.test:${P}/ HTTP/1.1\r\nHost: raw.tool.test\r\n${headers(99)}\r\n`, { until: completeResponse })
  t.equal(limit.status, 200, 'exactly 100 header fields are fine')
})

t.test('a chunked body whose framing breaks after the upstream was dialled is 400, and audited as 400', async (t) => {
  const { connect } = await import('node:net')
  const s = connect(sk.proxyPort, '127.0.0.1')
  t.teardown(() => s.destroy())
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString('latin1') })
  s.on('error', () => {})
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()))
  const pendingBefore = up.pending()
  s.write(`POST http://raw.tool.test:${P}/c1late HTTP/1.1\r\nHost: raw.tool.test:${P}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`)
  // Once the first chunk has parsed the upstream exchange starts; only then does the framing break (bare LF).
  await until(() => up.pending() > pendingBefore, 'the head and first chunk at the upstream')
  s.write('3\nabc\r\n0\r\n\r\n')
  await closed
  t.match(text, /^HTTP\/1\.1 400 /, 'the agent gets 400')
  const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.path === '/c1late')
  t.match(used, { status: 400, outcome: 'bad_request', error: /^SIDEKEY_BAD_REQUEST:HPE_/ }, 'the audit line says what the agent got')
})
