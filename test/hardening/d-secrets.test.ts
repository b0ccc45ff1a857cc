// Threat model, a log reader: no secret in any byte sidekey writes, escaped logs, and the interception CA.
import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes, X509Certificate } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request, Agent } from 'undici'
import { adminPost, startSidekey, tick } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { headerValues, leaks, raw, startRawUpstream } from './helpers.js'
import { until } from '../helpers/until.js'
import { completeResponse } from './tunnel-client.js'

const ROOT = join(import.meta.dirname, '..', '..')

/** Runs the built CLI, as `sidekey ARGS`, and gives back everything it printed. */
function cli (args: string[]): Promise<{ code: number | null, output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], {
      cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (c: Buffer) => { output += c.toString() })
    child.stderr.on('data', (c: Buffer) => { output += c.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, output }) })
  })
}

const canary = (name: string): string => `canary-${name}-${randomBytes(8).toString('hex')}/+x=`
const C = {
  file: canary('file'),
  oauth: canary('oauth'),
  clientSecret: canary('client-secret'),
  badSecret: canary('bad-secret'),
  issuerBody: canary('issuer-body'),
  agentQuery: canary('agent-query'),
  crash: canary('crash'),
  config: canary('config'),
}
const ALL = Object.values(C)

t.test('a canary in every path appears in no log line, metric, status, error body or CLI output', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-canary-'))
  writeFileSync(join(dir, 'token'), C.file + '\n', { mode: 0o600 })
  // Token endpoint: /ok issues the oauth canary; /bad fails, quoting the client secret and another canary back.
  const idp = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      const ok = req.url === '/ok'
      const body = ok
        ? JSON.stringify({ access_token: C.oauth, token_type: 'Bearer', expires_in: 3600 })
        : JSON.stringify({ error: 'invalid_client', error_description: `secret ${C.badSecret} rejected; token ${C.issuerBody}` })
      res.writeHead(ok ? 200 : 400, { 'content-type': 'application/json', 'x-debug': C.issuerBody })
      res.end(body)
    })
  })
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => idp.close(resolve)))
  const idpUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`
  // Upstream: 200 on /ok, 401 on /401, and on /garble a response so broken that the parser error quotes its bytes,
  // which include the credential it was sent.
  const up = await startRawUpstream((req, socket) => {
    const auth = headerValues(req, 'authorization')[0] ?? ''
    const path = req.line.split(' ')[1] ?? ''
    if (path.startsWith('/garble')) socket.end(`HTTP/1.1 200 OK\r\nX-Echo: ${auth}\r\nbroken header ${auth}\r\n\r\n`)
    else if (path.startsWith('/401')) socket.write('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n')
    else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
  })
  t.teardown(() => up.close())
  const P = up.port
  const sk = await startSidekey(t, `
instance_id: agent-d
ca: { dir: {{CA_DIR}} }
resolve: { file.tool.test: 127.0.0.1, oauth.tool.test: 127.0.0.1, query.tool.test: 127.0.0.1, bad.tool.test: 127.0.0.1, crash.tool.test: 127.0.0.1 }
issuers:
  mounted: { type: file, path: ${join(dir, 'token')} }
  idp: { type: oauth2_client_credentials, token_url: ${idpUrl}/ok, client_id: agent, client_secret: "${C.clientSecret}" }
  broken: { type: oauth2_client_credentials, token_url: ${idpUrl}/bad, client_id: agent, client_secret: "${C.badSecret}", auth_method: client_secret_post }
tools:
  file: { match: { host: file.tool.test, port: ${P} }, issuer: mounted, plaintext: true }
  oauth: { match: { host: oauth.tool.test, port: ${P} }, issuer: idp, plaintext: true, inject: { basic: { username: agent } } }
  query: { match: { host: query.tool.test, port: ${P} }, issuer: mounted, audience: q, plaintext: true, inject: { query: api_key } }
  bad: { match: { host: bad.tool.test, port: ${P} }, issuer: broken, plaintext: true }
  crash: { match: { host: crash.tool.test, port: ${P} }, issuer: mounted, audience: c, plaintext: true }
`)
  // A request handler that throws, carrying a canary in its message and cause.
  const credentials = sk.app.credentials
  const current = credentials.current.bind(credentials)
  credentials.current = (tool: string) => {
    if (tool === 'crash') throw new Error(`boom ${C.crash}`, { cause: new Error(C.crash) })
    return current(tool)
  }
  await until(() => sk.log.events('credential.refresh_failed').some((e) => e.tool === 'bad'))

  const agentSide: string[] = []
  const send = async (url: string, expected: number, headers = ''): Promise<void> => {
    const r = await raw(sk.proxyPort, `GET ${url} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`, { until: completeResponse })
    t.equal(r.status, expected, url)
    agentSide.push(r.text)
  }
  await send(`http://file.tool.test:${P}/ok`, 200, 'Authorization: Bearer sidekey\r\n') // success, header injection
  await send(`http://oauth.tool.test:${P}/ok`, 200) // success, basic injection of an OAuth token
  await send(`http://query.tool.test:${P}/ok?access_token=${encodeURIComponent(C.agentQuery)}&api_key=x&key=${C.agentQuery}`, 200) // query injection
  await send(`http://file.tool.test:${P}/garble`, 502) // upstream error whose parser error quotes the credential
  await send(`http://file.tool.test:${P}/401`, 401) // upstream 401: forced refresh, replay, passed through
  await send(`http://bad.tool.test:${P}/ok`, 503) // issuer error
  await send(`http://crash.tool.test:${P}/ok`, 500) // a request handler crash
  await send(`http://nowhere.test/?access_token=${C.agentQuery}`, 403) // denied, with a secret in the query
  await send(`http://file.tool.test:${P}/x/../../../?key=${C.agentQuery}`, 200)
  t.ok(up.requests.some((r) => r.line.includes(encodeURIComponent(C.file)) || r.line.includes(C.file)), 'query injection did reach the upstream')
  // Bad config holding a canary: `sidekey check` and `sidekey run` refuse it without quoting it.
  const badConfig = join(dir, 'bad.yaml')
  writeFileSync(badConfig, `instance_id: agent-d
issuers:
  x: { type: oauth2_client_credentials, token_url: "https://idp.test/${C.config}", client_id: a, client_secret: "${C.config}", client_secert: "${C.config}" }
  y: { type: oauth2_client_credentials, token_url: "${C.config}", client_id: a, client_secret: [ "${C.config}" ] }
tools:
  t: { match: { host: "${C.config}" }, issuer: x, inject: { header: "${C.config}", format: "${C.config}" } }
`)
  const [check, run] = await Promise.all([cli(['check', '--config', badConfig]), cli(['run', '--config', badConfig, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'])])
  t.equal(check.code, 2, check.output)
  t.match(check.output, /bad\.yaml:\d+:\d+: /)
  t.equal(run.code, 2)
  t.notMatch(run.output, /listening/)

  const admin = new Agent()
  t.teardown(() => admin.close())
  const adminSide: string[] = []
  for (const path of ['/metrics', '/status', '/readyz', '/healthz', '/.well-known/jwks.json', '/ca.pem', '/rotate/bad']) {
    const r = path.startsWith('/rotate') ? await adminPost(sk.app, path, { dispatcher: admin }) : await request(`${sk.adminUrl}${path}`, { dispatcher: admin })
    adminSide.push(await r.body.text())
  }
  await tick()
  // The detector itself must see what it is looking for.
  t.ok(leaks(`Basic ${Buffer.from(`agent:${C.oauth}`).toString('base64')}`, [C.oauth]).length > 0 && leaks(`?k=${encodeURIComponent(C.file)}`, [C.file]).length > 0)
  // Each path really ran: an upstream failure, a refresh failure, a crash, a replay after 401.
  t.ok(sk.log.events('credential.used').some((e) => e.tool === 'file' && e.status === 502 && String(e.error).startsWith('SIDEKEY_UPSTREAM_FAILED')))
  t.ok(sk.log.events('credential.refresh_failed').some((e) => e.tool === 'bad'))
  t.ok(sk.log.events('credential.used').some((e) => e.tool === 'file' && e.status === 401))
  for (const [where, text] of [['log', sk.log.text], ['agent responses', agentSide.join('\n')], ['admin', adminSide.join('\n')], ['check', check.output], ['run', run.output]] as const) {
    t.same(leaks(text, ALL), [], `no canary in ${where}`)
  }
  // what the agent gets for a failure is a code, a request id and sidekey's own fixed words (`reason`, `detail`:
  // what to do, never the upstream's error, an address, a path or a certificate detail).
  for (const text of agentSide.filter((s) => !/^HTTP\/1\.1 (200|401)/.test(s))) {
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
    t.ok(Object.keys(body).every((k) => ['error', 'request_id', 'tool', 'message', 'reason', 'detail'].includes(k)), JSON.stringify(body))
    t.match(body, { error: String, request_id: String })
    t.notMatch(JSON.stringify(body), /ECONN|UND_ERR|CERT|\/tmp|stack|at |127\.0\.0\.1/)
  }
  // the agent's query values never reach the log, and the audit path has no query at all.
  t.notMatch(sk.log.text, /access_token=|api_key=|[?&]key=/)
})

t.test('control characters, ANSI escapes and bidi overrides in what gets logged are escaped', async (t) => {
  const up = await startRawUpstream()
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: agent-d3
ca: { dir: {{CA_DIR}} }
resolve: { raw.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools: { raw: { match: { host: raw.tool.test, port: ${up.port} }, issuer: local, plaintext: true } }
`)
  // The HTTP parser refuses raw control bytes, C1 bytes and any non-ASCII byte in a request target, and C0 controls
  // in header values; what reaches a log line is percent-encoded text, logged as it came (visible, never decoded).
  // Escaped control bytes in a path are refused (400) but still audited, as sent; an escaped bidi override is
  // served and logged in its normal form (hex in upper case).
  const encoded = '/p%0d%0aX-Injected:%201%1b[31mred%e2%80%ae%c2%9bx'
  for (const host of [`raw.tool.test:${up.port}`, 'denied.test']) {
    const r = await raw(sk.proxyPort, `GET http://${host}${encoded}?q=%0a HTTP/1.1\r\nHost: x\r\nX-Obs: \u00ff\u009b\r\n\r\n`, { until: completeResponse })
    t.equal(r.status, 400, host)
  }
  const bidi = await raw(sk.proxyPort, `GET http://raw.tool.test:${up.port}/p%e2%80%aered%c2%9bx?q=%0a HTTP/1.1\r\nHost: x\r\n\r\n`, { until: completeResponse })
  t.equal(bidi.status, 200)
  for (const bytes of [[0xc2, 0x9b], [0x1b], [0x0d], [0xe2, 0x80, 0xae], [0x7f]]) {
    const r = await raw(sk.proxyPort, Buffer.concat([Buffer.from('GET http://denied.test/a'), Buffer.from(bytes), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]))
    t.equal(r.status, 400, `raw bytes ${bytes.join(',')} in the target are refused`)
  }
  const esc = await raw(sk.proxyPort, 'GET http://denied.test/ HTTP/1.1\r\nHost: x\r\nX-A: \u001b[31m\r\n\r\n')
  t.equal(esc.status, 400, 'ESC in a header value is refused by the parser')
  await tick()
  t.equal(sk.log.events('egress.denied').filter((e) => e.path === '/p%0d%0aX-Injected:%201%1b[31mred%e2%80%ae%c2%9bx').length, 2, 'logged as sent')
  t.equal(sk.log.events('credential.used').filter((e) => e.path === '/p%E2%80%AEred%C2%9Bx').length, 1, 'logged in normal form')
  t.notMatch(sk.log.text, /X-Injected: 1|\\n|\\r/, 'no decoded line break anywhere')
  t.notMatch(sk.log.text.replaceAll('\n', ''), /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u, 'no raw control or bidi character in the log')
  for (const line of sk.log.text.trim().split('\n')) JSON.parse(line) // every line is still one JSON object
})

t.test('the CA key stays private, the CA is constrained to the tools, and the served leaf is exact', async (t) => {
  const pki = await upstreamPki()
  const upstream = await startUpstream({ tls: await pki.cert('api.tool.test') })
  t.teardown(() => upstream.close())
  const config = `
instance_id: agent-ca
ca: { dir: {{CA_DIR}}, leaf_validity: 2d, name_constraints: true }
upstream_ca_file: ${pki.caFile}
resolve: { api.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools: { api: { match: { host: api.tool.test, port: ${upstream.port} }, issuer: local } }
`
  const sk = await startSidekey(t, config)
  const other = await startSidekey(t, config)
  const keyFile = join(sk.caDir, 'ca-key.pem')
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'key file is 0600')
  t.equal(statSync(sk.caDir).mode & 0o077, 0, 'CA dir is private to its owner')
  const keyBody = readFileSync(keyFile, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('-----')).join('')
  t.not(readFileSync(join(sk.caDir, 'ca.pem'), 'utf8'), readFileSync(join(other.caDir, 'ca.pem'), 'utf8'), 'a CA per sidecar')
  t.not(readFileSync(join(other.caDir, 'ca-key.pem'), 'utf8'), readFileSync(keyFile, 'utf8'))
  const admin = new Agent()
  t.teardown(() => admin.close())
  let served = ''
  for (const path of ['/ca.pem', '/metrics', '/status', '/.well-known/jwks.json', '/healthz', '/readyz']) {
    served += await (await request(`${sk.adminUrl}${path}`, { dispatcher: admin })).body.text()
  }
  t.notMatch(served, /PRIVATE KEY/)
  for (let i = 0; i + 48 <= keyBody.length; i += 48) t.notOk(served.includes(keyBody.slice(i, i + 48)) || sk.log.text.includes(keyBody.slice(i, i + 48)), 'no key material served or logged')
  t.notOk(Object.values(process.env).some((v) => v?.includes(keyBody.slice(0, 48))), 'not in the environment')

  // what openssl sees through the proxy.
  const chain = await sClient(sk.proxyPort, `api.tool.test:${upstream.port}`, 'api.tool.test')
  t.ok(chain.length >= 2, `chain of ${chain.length}`)
  const [leaf, issuer] = chain.map((pem) => new X509Certificate(pem)) as [X509Certificate, X509Certificate]
  t.equal(leaf.subjectAltName, 'DNS:api.tool.test', 'SAN is exactly the host')
  t.equal(leaf.ca, false, 'CA:FALSE')
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: serverAuth only')
  const text = await opensslText(chain[0]!)
  t.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/)
  t.match(text, /X509v3 Extended Key Usage:\s*\n\s*TLS Web Server Authentication\s*\n/)
  const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)
  t.ok(lifetime > 2 * 86_400_000 - 3_600_000 && lifetime <= 2 * 86_400_000 + 3_600_000, `leaf validity is the configured 2d (${lifetime} ms)`)
  t.ok(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey), 'signed by the issuing CA')
  // the issuing CA sent with the leaf is constrained to the tool hosts.
  t.match(await opensslText(chain[1]!), /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:api\.tool\.test/)
  t.match(await opensslText(readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')), /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:api\.tool\.test/)
  // No leaf for anything else: a CONNECT elsewhere is refused, a wrong SNI gets no certificate.
  const wrong = await sClientRaw(sk.proxyPort, `api.tool.test:${upstream.port}`, 'evil.test')
  t.notMatch(wrong, /BEGIN CERTIFICATE/)
  const elsewhere = await raw(sk.proxyPort, 'CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n')
  t.equal(elsewhere.status, 403)
})

function sClientRaw (proxyPort: number, connect: string, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-proxy', `127.0.0.1:${proxyPort}`, '-connect', connect, '-servername', servername, '-showcerts'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.stderr.on('data', (c: Buffer) => { out += c.toString() })
    child.stdin.end()
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.on('close', () => { clearTimeout(timer); resolve(out) })
  })
}

async function sClient (proxyPort: number, connect: string, servername: string): Promise<string[]> {
  const out = await sClientRaw(proxyPort, connect, servername)
  return out.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
}

function opensslText (pem: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('openssl', ['x509', '-noout', '-text'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.on('close', () => resolve(out))
    child.stdin.end(pem)
  })
}
