// Threat model, the agent, read-back and path confusion: the agent never reads the credential back. An upstream that echoes what it was sent (a
// redirect keeping the query, an error page quoting the key, a 401 body, WebSocket 101 headers, HEAD/OPTIONS
// answers, a key split across body chunks, percent-encoded and base64 spellings) is answered to the agent with
// the placeholder, through absolute-form, a plain CONNECT tunnel, a TLS CONNECT tunnel (HTTP/1.1) and HTTP/2; the
// audit says where it was echoed. TRACE and CONNECT never carry a credential; method overrides are held to `methods`.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { connect as h2connect, type ClientHttp2Session } from 'node:http2'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { constants, gunzipSync, gzipSync } from 'node:zlib'
import { pathShape } from '../../src/secrets/path-shape.js'
import { SPELLINGS } from '../../src/proxy/scrub/scrub.js'
import { startSidekey } from '../helpers/sidekey.js'
import { upstreamPki } from '../helpers/upstream.js'
import { acceptKey, auditLine } from '../protocols/helpers.js'
import { connectTunnel, tlsThroughTunnel } from '../helpers/connect.js'
import { encodings, leaks, raw } from './helpers.js'
import { exchange } from './tunnel-client.js'

const CANARY = `canary-echo-${randomBytes(8).toString('hex')}/+x=`
const HOST = 'echo.test'

/** The key as the upstream received it: the query's api_key, basic auth's password, or the bearer token. */
function keyOf (req: IncomingMessage): { key: string, auth: string } {
  const auth = req.headers.authorization ?? ''
  const query = new URL(req.url ?? '/', 'https://x').searchParams.get('api_key')
  if (query !== null) return { key: query, auth }
  if (auth.startsWith('Basic ')) return { key: Buffer.from(auth.slice(6), 'base64').toString().split(':').slice(1).join(':'), auth }
  return { key: auth.replace(/^Bearer /, ''), auth }
}

/** Every spelling the upstream echoes the key in. */
const spelled = (key: string, auth: string): string =>
  `raw ${key} url ${encodeURIComponent(key)} b64 ${Buffer.from(`a${key}!`).toString('base64')} b64url ${Buffer.from(`aa${key}`).toString('base64url')} auth ${auth}`

/** `key` with the characters ASP.NET Core's JSON writer escapes as `\\uXXXX`, hex cased by `cased`. */
const unicodeEscaped = (key: string, cased: (hex: string) => string): string =>
  key.replace(/[+<>&'"`]/g, (c) => `\\u${cased(c.charCodeAt(0).toString(16).padStart(4, '0'))}`)

/** Python's urllib.parse.quote(key, safe) for an ASCII key: all but letters, digits, `_.~-` and `safe` as %XX. */
const pythonQuoted = (key: string, safe: string): string =>
  key.replace(/[^A-Za-z0-9_.~-]/g, (c) => safe.includes(c) ? c : `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

const traces: string[] = []
const pki = await upstreamPki()
const leaf = await pki.cert(HOST)
const upstream = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req: IncomingMessage, res: ServerResponse) => {
  req.resume()
  req.on('end', () => { void answer(req, res) })
})
async function answer (req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { key, auth } = keyOf(req)
  const url = new URL(req.url ?? '/', 'https://x')
  const last = url.pathname.split('/').filter((s) => s !== '').at(-1) ?? ''
  if (req.method === 'TRACE') traces.push(req.url ?? '')
  if (req.method === 'HEAD' || req.method === 'OPTIONS') {
    const body = req.method === 'OPTIONS' ? `options for ${key}` : ''
    res.writeHead(200, { 'x-echo': key, allow: 'GET, OPTIONS', 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
    res.end(body)
    return
  }
  switch (last) {
    case 'reflectloc': { // a trailing-slash redirect that keeps the query
      const location = `${url.pathname}/${url.search}`
      res.writeHead(301, { location, 'content-type': 'text/html' })
      res.end(`<a href="${location}">moved</a>`)
      return
    }
    case 'error':
      res.writeHead(400, { 'content-type': 'text/html', 'www-authenticate': `Basic realm="api", error="invalid ${auth}"` })
      res.end(`<h1>400 invalid key ${auth}</h1><p>${key}</p>`)
      return
    case '401':
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: `bad key ${key}` }))
      return
    case 'split': { // the key written a few bytes at a time, each write on its own turn
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('start ')
      for (let i = 0; i < key.length; i += 3) {
        res.write(key.slice(i, i + 3))
        await new Promise((resolve) => setImmediate(resolve))
      }
      res.end(' end')
      return
    }
    case 'encoded':
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': [`session=${encodeURIComponent(key)}; Secure`, `b=${Buffer.from(`x${key}`).toString('base64')}`],
        link: `<https://${HOST}/next?api_key=${encodeURIComponent(key)}>; rel="next"`,
        'x-b64': Buffer.from(`aa${key}!`).toString('base64'),
        'x-auth': auth,
      })
      res.end(JSON.stringify({ echo: spelled(key, auth) }))
      return
    case 'gzip': // compressed although sidekey asked for identity
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'x-accept-encoding': String(req.headers['accept-encoding']) })
      res.end(gzipSync(`zipped ${spelled(key, auth)}`))
      return
    case 'compress':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'compress' })
      res.end(`not really compressed ${key}`)
      return
    case 'anything': // httpbin's /anything: the request's headers, as received, in a JSON body
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ args: {}, headers: { Authorization: auth, Host: req.headers.host }, method: req.method, url: req.url }, null, 2))
      return
    case 'utf16le':
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-16le' })
      res.end(Buffer.from(`token ${key}`, 'utf16le'))
      return
    case 'utf16bom': // no charset: the byte order mark says UTF-16, big-endian
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(Buffer.from(`\ufeff${JSON.stringify({ token: key })}`, 'utf16le').swap16())
      return
    case 'octet': { // a binary download quoting the key, with its length
      const body = Buffer.concat([Buffer.from([0x00, 0xff, 0x10]), Buffer.from(key), Buffer.from([0x80, 0x00])])
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
      res.end(body)
      return
    }
    case 'multipart':
      res.writeHead(200, { 'content-type': 'multipart/form-data; boundary=zz' })
      res.end(`--zz\r\ncontent-disposition: form-data; name="meta"\r\ncontent-type: application/json\r\n\r\n${JSON.stringify({ key })}\r\n--zz--\r\n`)
      return
    case 'aspnet': // System.Text.Json's default encoder: + as \u002B; and the same in lower-case hex
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      res.end(`{"upper":"${unicodeEscaped(key, (h) => h.toUpperCase())}","lower":"${unicodeEscaped(key, (h) => h)}"}`)
      return
    case 'pyloc': // a redirect built with Python's urllib.parse.quote() (safe='/'), and quote_plus() in a header
      res.writeHead(302, {
        location: `https://${HOST}/callback?token=${pythonQuoted(key, '/')}`,
        'x-next': `token=${pythonQuoted(key, '')}`,
        'content-length': 0
      })
      res.end()
      return
    default:
      res.writeHead(200, { 'content-type': 'application/json', 'x-override': String(req.headers['x-http-method-override'] ?? 'none') })
      res.end(JSON.stringify({ method: req.method, echo: spelled(key, auth) }))
  }
}
// WebSocket: a 101 whose headers quote the key, or (path ending in /refuse) a 403 whose body does.
upstream.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
  const { key, auth } = keyOf(req)
  socket.on('error', () => socket.destroy())
  if ((req.url ?? '').includes('/refuse')) {
    const body = `refused ${spelled(key, auth)}`
    socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nx-echo: ${key}\r\nconnection: close\r\n\r\n${body}`)
    return
  }
  socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
    `sec-websocket-accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\nx-echo: ${key}\r\nx-auth: ${auth}\r\n\r\n`)
})
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => { upstream.closeAllConnections(); upstream.close(() => resolve()) }))
const P = (upstream.address() as AddressInfo).port

/**
 * Framings node:http never writes, on a raw TLS socket: the request's bearer key gzipped under `Transfer-Encoding:
 * gzip, chunked`, under an empty Content-Encoding, or under stacked Content-Encodings of a binary type.
 */
const faults = createTlsServer({ cert: leaf.certPem, key: leaf.keyPem, ALPNProtocols: ['http/1.1'] }, (socket: TLSSocket) => {
  let head = ''
  socket.on('error', () => socket.destroy())
  socket.on('data', (c: Buffer) => {
    head += c.toString('latin1')
    if (!head.includes('\r\n\r\n')) return
    const key = /\r\nauthorization: *Bearer (\S+)/i.exec(head)?.[1] ?? ''
    const path = head.split(' ')[1] ?? ''
    const zipped = gzipSync(`zipped ${key}`)
    let answer: Buffer
    if (path.endsWith('/te-gzip')) {
      answer = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: gzip, chunked\r\n\r\n' +
        `${zipped.length.toString(16)}\r\n`, 'latin1'), zipped, Buffer.from('\r\n0\r\n\r\n')])
    } else if (path.endsWith('/ce-empty')) {
      answer = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: \r\ncontent-length: ${zipped.length}\r\n\r\n`), zipped])
    } else {
      const twice = gzipSync(zipped)
      answer = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-encoding: gzip, gzip\r\n' +
        `content-length: ${twice.length}\r\n\r\n`), twice])
    }
    socket.end(answer)
  })
})
await new Promise<void>((resolve) => faults.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => faults.close(() => resolve())))
const FAULTS = (faults.address() as AddressInfo).port
const AUTHORITY = `${HOST}:${P}`

const dir = mkdtempSync(join(tmpdir(), 'sidekey-echo-'))
writeFileSync(join(dir, 'key'), CANARY + '\n', { mode: 0o600 })
const sk = await startSidekey(t, `
instance_id: agent-h
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { ${HOST}: 127.0.0.1 }
anomaly: { rate_limit: { max: 10000 } }
issuers:
  keyfile: { type: file, path: ${join(dir, 'key')} }
tools:
  query: { match: { host: ${HOST}, port: ${P}, path_prefix: /q/ }, issuer: keyfile, inject: { query: api_key } }
  basic: { match: { host: ${HOST}, port: ${P}, path_prefix: /b/ }, issuer: keyfile, inject: { basic: { username: agent } } }
  bearer: { match: { host: ${HOST}, port: ${P}, path_prefix: /h/, methods: [GET, HEAD, TRACE] }, issuer: keyfile }
  override: { match: { host: ${HOST}, port: ${P}, path_prefix: /o/, methods: [GET, POST] }, issuer: keyfile, allow_method_override: true }
  default: { match: { host: ${HOST}, port: ${P}, path_prefix: /d/ }, issuer: keyfile }
  optout: { match: { host: ${HOST}, port: ${P}, path_prefix: /n/ }, issuer: keyfile, scrub_body: false }
  faults: { match: { host: ${HOST}, port: ${FAULTS} }, issuer: keyfile }
`)
const caPem = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')

type Transport = 'absolute' | 'plain-tunnel' | 'tls-tunnel' | 'h2'
const H1: readonly Transport[] = ['absolute', 'plain-tunnel', 'tls-tunnel']
const ALL: readonly Transport[] = [...H1, 'h2']

interface AgentView { status: number, headers: Record<string, string>, body: string, text: string }

/** What the agent got for one request over `transport`: status, headers, the decoded body, and everything as text. */
async function agentView (transport: Transport, method: string, path: string, extra: Record<string, string> = {}, authority = AUTHORITY): Promise<AgentView> {
  if (transport === 'h2') return await h2View(method, path, extra)
  const target = transport === 'absolute' ? `http://${authority}${path}` : path
  const request = `${method} ${target} HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n` +
    Object.entries(extra).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
  let text: string
  if (transport === 'absolute') text = (await raw(sk.proxyPort, request)).text
  else {
    const socket = transport === 'plain-tunnel' ? await connectTunnel(sk.proxyPort, authority) : await tlsThroughTunnel(sk.proxyPort, authority, { servername: HOST, ca: caPem })
    text = (await exchange(socket, request, () => false)).text
    socket.destroy()
  }
  return parseH1(text, method)
}

function parseH1 (text: string, method: string): AgentView {
  const end = text.indexOf('\r\n\r\n')
  const lines = text.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const c = line.indexOf(':')
    const name = line.slice(0, c).toLowerCase()
    headers[name] = headers[name] === undefined ? line.slice(c + 1).trim() : `${headers[name]}, ${line.slice(c + 1).trim()}`
  }
  let body = method === 'HEAD' ? '' : text.slice(end + 4)
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    let out = ''
    for (let pos = 0; ;) {
      const lineEnd = body.indexOf('\r\n', pos)
      const size = parseInt(body.slice(pos, lineEnd), 16)
      if (!(size > 0)) break
      out += body.slice(lineEnd + 2, lineEnd + 2 + size)
      pos = lineEnd + 2 + size + 2
    }
    body = out
  }
  return { status: Number(lines[0]!.split(' ')[1]), headers, body, text: `${text.slice(0, end)}\n${body}` }
}

let session: ClientHttp2Session | undefined
async function h2View (method: string, path: string, extra: Record<string, string>): Promise<AgentView> {
  if (session === undefined || session.destroyed || session.closed) {
    const socket = await tlsThroughTunnel(sk.proxyPort, `${HOST}:${P}`, { servername: HOST, ca: caPem, alpn: ['h2'] })
    const s = h2connect(`https://${AUTHORITY}`, { createConnection: () => socket })
    s.on('error', () => {})
    session = s
  }
  const headers = method === 'CONNECT' ? { ':method': 'CONNECT', ':authority': path } : { ':method': method, ':path': path, ':authority': AUTHORITY, ...extra }
  const stream = session.request(headers, { endStream: true })
  const [response] = await once(stream, 'response') as [Record<string, string | string[] | number>]
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  const flat: Record<string, string> = {}
  for (const [k, v] of Object.entries(response)) flat[k] = Array.isArray(v) ? v.join(', ') : String(v)
  const body = Buffer.concat(chunks).toString('latin1')
  return { status: Number(response[':status']), headers: flat, body, text: `${JSON.stringify(flat)}\n${body}` }
}
t.teardown(() => { session?.destroy() })

/** The audit line of the request to `path` (paths are unique per transport). */
async function used (path: string): Promise<Record<string, unknown>> {
  const line = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.path === path.split('?')[0])
  if (line === undefined) throw new Error(`no credential.used for ${path}`)
  return line
}

async function anomaly (t: Test, tool: string, path: string): Promise<void> {
  const found = await auditLine(sk.log, (e) => e.event === 'anomaly' && e.kind === 'credential_echoed' && e.tool === tool && String(e.detail).includes(pathShape(path.split('?')[0]!)))
  t.ok(found, `anomaly credential_echoed for ${tool} ${path}`)
}

/** The probe's common assertions: the agent's view holds no spelling of the canary; the audit names the echo. */
async function noEcho (t: Test, view: AgentView, tool: string, path: string, echoed: readonly string[]): Promise<void> {
  t.same(leaks(view.text, [CANARY]), [], 'the agent never reads the credential back, in any spelling')
  const line = await used(path)
  t.same(line.echoed, echoed, 'the audit says where it was echoed')
  t.notOk(JSON.stringify(sk.log.lines).includes(CANARY), 'nor does the log hold it')
  await anomaly(t, tool, path)
}

t.test('a 301 keeping the query of a query-injected key comes back with the placeholder in Location and body', async (t) => {
  for (const transport of ALL) {
    const path = `/q/${transport}/reflectloc`
    const view = await agentView(transport, 'GET', `${path}?q=1&api_key=sidekey`)
    t.equal(view.status, 301, transport)
    t.equal(view.headers.location, `${path}/?q=1&api_key=sidekey`, `${transport}: the location the agent follows carries the placeholder`)
    await noEcho(t, view, 'query', path, ['location', 'body'])
  }
})

t.test('TRACE is refused 405 with Allow for every tool, even one whose methods list it; the upstream never sees it', async (t) => {
  for (const transport of ALL) {
    for (const [tool, prefix, allow] of [['query', '/q', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'], ['bearer', '/h', 'GET, HEAD']] as const) {
      const path = `${prefix}/${transport}/trace`
      const view = await agentView(transport, 'TRACE', path)
      t.equal(view.status, 405, `${transport} ${tool}`)
      t.equal(view.headers.allow, allow)
      t.match(JSON.parse(view.body), { error: 'method_denied', tool })
      t.match(await used(path), { tool, method: 'TRACE', status: 405, outcome: 'method_denied', credential_id: null })
    }
  }
  t.same(traces, [], 'no TRACE reached the upstream')
})

t.test('an error page quoting the basic key (header and body) reaches the agent with the placeholder', async (t) => {
  for (const transport of ALL) {
    const path = `/b/${transport}/error`
    const view = await agentView(transport, 'GET', path, { authorization: 'Basic ' + Buffer.from('agent:sidekey').toString('base64') })
    t.equal(view.status, 400, transport)
    t.match(view.headers['www-authenticate'], `error="invalid Basic ${Buffer.from('agent:sidekey').toString('base64')}"`, 'the exact basic value becomes the placeholder\'s')
    t.match(view.body, '<p>sidekey</p>')
    t.notOk('content-length' in view.headers, 'a scrubbed body drops the upstream\'s Content-Length')
    await noEcho(t, view, 'basic', path, ['www-authenticate', 'body'])
  }
})

t.test('a 401 body quoting the key after a failed replay is scrubbed', async (t) => {
  for (const transport of ALL) {
    const path = `/b/${transport}/401`
    const view = await agentView(transport, 'GET', path)
    t.equal(view.status, 401, transport)
    t.same(JSON.parse(view.body), { error: 'bad key sidekey' })
    await noEcho(t, view, 'basic', path, ['body'])
  }
})

t.test('WebSocket 101 headers and a refused handshake\'s body are scrubbed (HTTP/1.1 transports: h2 offers no WebSocket)', async (t) => {
  for (const transport of H1) {
    for (const end of ['ws', 'refuse']) {
      const path = `/q/${transport}/${end}`
      const view = await agentView(transport, 'GET', path, { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' })
      t.equal(view.status, end === 'ws' ? 101 : 403, `${transport} ${end}`)
      t.equal(view.headers['x-echo'], 'sidekey')
      await noEcho(t, view, 'query', path, end === 'ws' ? ['x-echo'] : ['x-echo', 'body'])
    }
  }
})

t.test('HEAD and OPTIONS answers are scrubbed (headers; the OPTIONS body of a basic tool)', async (t) => {
  for (const transport of ALL) {
    const head = `/h/${transport}/head`
    const h = await agentView(transport, 'HEAD', head)
    t.equal(h.status, 200, `${transport} HEAD`)
    t.equal(h.headers['x-echo'], 'sidekey')
    await noEcho(t, h, 'bearer', head, ['x-echo'])
    const options = `/b/${transport}/options`
    const o = await agentView(transport, 'OPTIONS', options)
    t.equal(o.body, 'options for sidekey', `${transport} OPTIONS`)
    await noEcho(t, o, 'basic', options, ['x-echo', 'body'])
  }
})

t.test('a key split across body chunks is still caught', async (t) => {
  for (const transport of ALL) {
    const path = `/q/${transport}/split`
    const view = await agentView(transport, 'GET', path)
    t.equal(view.body, 'start sidekey end', transport)
    await noEcho(t, view, 'query', path, ['body'])
  }
})

t.test('percent-encoded and base64 spellings in Set-Cookie, Link, other headers and the body are caught', async (t) => {
  for (const transport of ALL) {
    const path = `/b/${transport}/encoded`
    const view = await agentView(transport, 'GET', path)
    t.equal(view.status, 200, transport)
    t.match(view.headers.link, '?api_key=sidekey>')
    t.match(view.headers['set-cookie'], 'session=sidekey; Secure')
    await noEcho(t, view, 'basic', path, ['set-cookie', 'link', 'x-b64', 'x-auth', 'body'])
  }
})

t.test('bodies of scrubbed tools are asked for uncompressed; a gzip answer anyway is decoded and scrubbed; an unknown coding is refused', async (t) => {
  for (const transport of ALL) {
    const path = `/q/${transport}/gzip`
    const view = await agentView(transport, 'GET', path, { 'accept-encoding': 'gzip, br' })
    t.equal(view.headers['x-accept-encoding'], 'identity', `${transport}: the agent's accept-encoding was replaced`)
    t.notOk('content-encoding' in view.headers, 'sent decoded')
    t.match(view.body, /^zipped raw sidekey url sidekey /)
    await noEcho(t, view, 'query', path, ['body'])
    const compress = `/q/${transport}/compress`
    const refused = await agentView(transport, 'GET', compress)
    t.equal(refused.status, 502)
    t.same(leaks(refused.text, [CANARY]), [])
    t.match(await used(compress), { status: 502, outcome: 'upstream_error' })
  }
})

t.test('an httpbin-style echo of a header-injected bearer token is scrubbed by default (scrub_body defaults on)', async (t) => {
  for (const transport of ALL) {
    const path = `/d/${transport}/anything`
    const view = await agentView(transport, 'GET', path, { authorization: 'Bearer sidekey' })
    t.equal(view.status, 200, transport)
    t.equal(JSON.parse(view.body).headers.Authorization, 'Bearer sidekey', 'the agent reads its own placeholder back')
    t.same(heldIn(view), [], 'and no spelling of the real token, however decoded')
    await noEcho(t, view, 'default', path, ['body'])
  }
})

t.test('method-override headers are stripped unless allowed, and when allowed are held to methods; TRACE refused', async (t) => {
  for (const transport of ALL) {
    const stripped = await agentView(transport, 'GET', `/q/${transport}/ov`, { 'X-HTTP-Method-Override': 'DELETE', 'X-HTTP-Method': 'DELETE', 'X-Method-Override': 'DELETE' })
    t.match(JSON.parse(stripped.body), { method: 'GET' }, `${transport}: forwarded`)
    t.equal(stripped.headers['x-override'], 'none', 'without the override headers')
    const denied = await agentView(transport, 'POST', `/o/${transport}/delete`, { 'X-HTTP-Method-Override': 'delete', 'content-length': '0' })
    t.equal(denied.status, 403, 'an allowed override outside methods is refused like the method')
    t.match(await used(`/o/${transport}/delete`), { status: 403, outcome: 'method_denied' })
    const trace = await agentView(transport, 'GET', `/o/${transport}/trace`, { 'X-Method-Override': 'TRACE' })
    t.equal(trace.status, 405)
    const allowed = await agentView(transport, 'GET', `/o/${transport}/post`, { 'X-HTTP-Method-Override': 'POST' })
    t.equal(allowed.headers['x-override'], 'POST', 'an allowed override inside methods is forwarded')
  }
})

t.test('CONNECT written inside an intercepted tunnel (plain, TLS, h2) is answered 405 and audited', async (t) => {
  for (const transport of ['plain-tunnel', 'tls-tunnel', 'h2'] as const) {
    const view = transport === 'h2'
      ? await h2View('CONNECT', 'inner.test:443', {})
      : await (async () => {
        const socket: Socket = transport === 'plain-tunnel' ? await connectTunnel(sk.proxyPort, AUTHORITY) : await tlsThroughTunnel(sk.proxyPort, AUTHORITY, { servername: HOST, ca: caPem })
        const r = await exchange(socket, 'CONNECT inner.test:443 HTTP/1.1\r\nHost: inner.test:443\r\n\r\n', () => false)
        t.ok(r.closed, `${transport}: the connection closes after the answer`)
        return parseH1(r.text, 'CONNECT')
      })()
    t.equal(view.status, 405, transport)
    t.equal(view.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS')
    const line = await auditLine(sk.log, (e) => e.event === 'egress.denied' && e.reason === 'connect_in_tunnel' && e.request_id === view.headers['x-sidekey-request-id'])
    t.match(line, { host: HOST, port: P, method: 'CONNECT', requested: 'inner.test:443' })
  }
})

/** The canary's spellings the agent could find in a body: read as bytes, as UTF-16 either way, or gunzipped. */
function heldIn (view: AgentView): string[] {
  const body = Buffer.from(view.body, 'latin1')
  const even = body.subarray(0, body.length - (body.length % 2))
  const texts = [view.text, body.toString('utf8'), even.toString('utf16le'), Buffer.from(even).swap16().toString('utf16le')]
  if (body[0] === 0x1f && body[1] === 0x8b) {
    texts.push(gunzipSync(body, { finishFlush: constants.Z_SYNC_FLUSH }).toString('latin1'))
  }
  const spellings = new Set([...encodings(CANARY), ...SPELLINGS.map(({ spell }) => spell(CANARY))])
  return [...spellings].filter((s) => texts.some((text) => text.includes(s)))
}

const TLS_H1: readonly Transport[] = ['absolute', 'tls-tunnel']

t.test('bodies of every kind are scrubbed: UTF-16 (charset, byte order mark), octet-stream, multipart', async (t) => {
  for (const transport of TLS_H1) {
    for (const [end, decode] of [['utf16le', 'utf16le'], ['utf16bom', 'utf16be'], ['octet', 'latin1'], ['multipart', 'latin1']] as const) {
      const path = `/d/${transport}/${end}`
      const view = await agentView(transport, 'GET', path)
      t.equal(view.status, 200, `${transport} ${end}`)
      const bytes = Buffer.from(view.body, 'latin1')
      const text = decode === 'utf16be' ? Buffer.from(bytes).swap16().toString('utf16le') : bytes.toString(decode)
      t.match(text, 'sidekey', 'the placeholder in its place, in the body\'s own encoding')
      t.same(heldIn(view), [], 'no spelling of the token')
      await noEcho(t, view, 'default', path, ['body'])
      if (end === 'octet') {
        t.equal(view.headers['content-length'], String(bytes.length), 'a small body keeps a Content-Length: the scrubbed one')
        t.same([...bytes.subarray(0, 3)], [0x00, 0xff, 0x10], 'the binary bytes around the key are untouched')
      }
    }
  }
})

t.test('\\u002B-escaped JSON (ASP.NET Core, either hex case) and a Location written with Python quote()', async (t) => {
  for (const transport of TLS_H1) {
    const aspnet = `/d/${transport}/aspnet`
    const json = await agentView(transport, 'GET', aspnet)
    t.same(JSON.parse(json.body), { upper: 'sidekey', lower: 'sidekey' }, `${transport}: valid JSON, the placeholder in both`)
    t.notOk(json.body.includes(CANARY.split('+')[0]!), 'no part of the token is left')
    await noEcho(t, json, 'default', aspnet, ['body'])
    const pyloc = `/d/${transport}/pyloc`
    const moved = await agentView(transport, 'GET', pyloc)
    t.equal(moved.status, 302)
    t.equal(moved.headers.location, `https://${HOST}/callback?token=sidekey`)
    t.equal(moved.headers['x-next'], 'token=sidekey')
    t.same(heldIn(moved), [])
    await noEcho(t, moved, 'default', pyloc, ['location', 'x-next'])
  }
})

t.test('codings sidekey cannot read are refused 502, never relayed: gzip, chunked; gzip under an empty Content-Encoding; stacked', async (t) => {
  for (const transport of TLS_H1) {
    for (const [end, reason] of [['te-gzip', 'unscrubbable_transfer_coding'], ['ce-empty', 'unscrubbable_encoding'], ['ce-stacked', 'unscrubbable_encoding']]) {
      const path = `/f/${transport}/${end}`
      const view = await agentView(transport, 'GET', path, {}, `${HOST}:${FAULTS}`)
      t.equal(view.status, 502, `${transport} ${end}`)
      t.match(JSON.parse(view.body), { error: 'upstream_failed', reason })
      t.same(heldIn(view), [], 'not a byte of the coded body')
      t.match(await used(path), { tool: 'faults', status: 502, outcome: 'upstream_error' })
    }
  }
})

t.test('with scrub_body: false the body is relayed as sent, but an echo in its first 64 KiB is audited and raises the anomaly', async (t) => {
  for (const transport of TLS_H1) {
    const path = `/n/${transport}/anything`
    const view = await agentView(transport, 'GET', path)
    t.equal(view.status, 200, transport)
    t.equal(JSON.parse(view.body).headers.Authorization, `Bearer ${CANARY}`, 'not rewritten: the tool opted out')
    t.match(await used(path), { tool: 'optout', status: 200, echoed: ['body'] })
    await anomaly(t, 'optout', path)
    t.notOk(JSON.stringify(sk.log.lines).includes(CANARY), 'the log does not hold the token')
  }
})
