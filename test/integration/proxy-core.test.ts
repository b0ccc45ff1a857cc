import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'

const run = promisify(execFile)
// Asked before the first subtest: a top-level await between subtests can outlive them, and tap ends the root then.
const hasRequests = await run('python3', ['-c', 'import requests']).then(() => true, () => false)

const pki = await upstreamPki()
const tlsUpstream = await startUpstream({ tls: await pki.cert('api.tool.test') })
const plainUpstream = await startUpstream()
t.teardown(() => tlsUpstream.close())
t.teardown(() => plainUpstream.close())

const config = `
instance_id: agent-7
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve:
  api.tool.test: 127.0.0.1
  plain.tool.test: 127.0.0.1
issuers:
  local: { type: local_jwt, ttl: 10m, issuer: https://sidekey.test }
tools:
  api:
    match: { host: api.tool.test, port: ${tlsUpstream.port} }
    issuer: local
    scopes: [read, write]
    audience: https://api.tool.test
    placeholder: sidekey
  plain:
    match: { host: plain.tool.test, port: ${plainUpstream.port} }
    issuer: local
    scopes: [demo]
    plaintext: true
    placeholder: sidekey
`
const sk = await startSidekey(t, config)
const jwks = createRemoteJWKSet(new URL(`${sk.adminUrl}/.well-known/jwks.json`))
const caFile = join(sk.caDir, 'ca.pem')

async function verifies (authorization: unknown, audience?: string): Promise<Record<string, unknown>> {
  if (typeof authorization !== 'string') throw new Error('no authorization header upstream')
  const token = String(authorization).replace(/^Bearer /, '')
  const { payload } = await jwtVerify(token, jwks, { issuer: 'https://sidekey.test', ...(audience === undefined ? {} : { audience }) })
  return payload
}

t.test('curl, absolute-form http: the tool sees a verified JWT, never the placeholder, and the use is audited', async (t) => {
  const before = plainUpstream.seen.length
  const { stdout } = await run('curl', ['-sS', '-x', sk.proxyUrl, '-H', 'Authorization: Bearer sidekey', `http://plain.tool.test:${plainUpstream.port}/v1/things?q=1`])
  t.match(JSON.parse(stdout), { method: 'GET', url: '/v1/things?q=1' })
  const seen = plainUpstream.seen[before]!
  t.not(seen.headers.authorization, 'Bearer sidekey')
  t.notOk(JSON.stringify(seen.rawHeaders).includes('sidekey '), 'placeholder gone')
  const claims = await verifies(seen.headers.authorization)
  t.match(claims, { sub: 'agent-7', tool: 'plain', scope: 'demo' })
  t.type(claims.jti, 'string')
  const used = sk.log.events('credential.used').find((e) => e.tool === 'plain')
  t.match(used, { instance_id: 'agent-7', credential_id: claims.jti, method: 'GET', host: 'plain.tool.test', path: '/v1/things', status: 200, placeholder: 'stripped' })
  t.notOk(sk.log.text.includes(String(seen.headers.authorization).slice(7)), 'the token is in no log line')
})

t.test('curl through CONNECT with TLS interception: leaf verifies against sidekey CA, tool sees the JWT over TLS', async (t) => {
  const before = tlsUpstream.seen.length
  const { stdout } = await run('curl', ['-sS', '--proxy', sk.proxyUrl, '--cacert', caFile, '-H', 'Authorization: Bearer sidekey', '-X', 'POST', '-d', 'hello',
    `https://api.tool.test:${tlsUpstream.port}/repos`])
  t.match(JSON.parse(stdout), { method: 'POST', url: '/repos', bytes: 5 })
  const seen = tlsUpstream.seen[before]!
  t.equal(seen.tls, true)
  t.equal(seen.body.toString(), 'hello')
  const claims = await verifies(seen.headers.authorization, 'https://api.tool.test')
  t.match(claims, { sub: 'agent-7', tool: 'api', scope: 'read write', aud: 'https://api.tool.test' })
})

t.test('a plain http:// call to a TLS tool is carried upstream over https', async (t) => {
  const before = tlsUpstream.seen.length
  const res = await request(`http://api.tool.test:${tlsUpstream.port}/plain`, { dispatcher: new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false }), headers: { authorization: 'Bearer sidekey' } })
  t.equal(res.statusCode, 200)
  await res.body.json()
  t.equal(tlsUpstream.seen[before]!.tls, true)
  await verifies(tlsUpstream.seen[before]!.headers.authorization)
})

t.test('undici ProxyAgent: https through an intercepted tunnel, http through a plain tunnel', async (t) => {
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: await import('node:fs').then((fs) => fs.readFileSync(caFile, 'utf8')) } })
  t.teardown(() => agent.close())
  const a = await request(`https://api.tool.test:${tlsUpstream.port}/tunnel`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
  t.equal(a.statusCode, 200)
  t.match(await a.body.json(), { url: '/tunnel' })
  const before = plainUpstream.seen.length
  const b = await request(`http://plain.tool.test:${plainUpstream.port}/tunnel-plain`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
  t.equal(b.statusCode, 200)
  await b.body.json()
  await verifies(plainUpstream.seen[before]!.headers.authorization)
})

t.test('unmatched destinations get 403 and reach nothing', async (t) => {
  const before = plainUpstream.seen.length + tlsUpstream.seen.length
  const res = await request(`http://elsewhere.test:${plainUpstream.port}/`, { dispatcher: new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false }) })
  t.equal(res.statusCode, 403)
  t.match(await res.body.json(), { error: 'egress_denied' })
  const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_connect}', '--proxy', sk.proxyUrl, `https://elsewhere.test:${tlsUpstream.port}/`]).catch((e: { stdout: string }) => e)
  t.equal(stdout, '403')
  t.equal(plainUpstream.seen.length + tlsUpstream.seen.length, before)
  t.ok(sk.log.events('egress.denied').some((e) => e.host === 'elsewhere.test' && e.instance_id === 'agent-7'))
})

t.test('Python requests through the proxy', { skip: hasRequests ? false : 'python3 with requests is not installed' }, async (t) => {
  const before = tlsUpstream.seen.length
  const script = `import requests,sys
r = requests.get(sys.argv[1], headers={'Authorization': 'Bearer sidekey'}, proxies={'https': sys.argv[2], 'http': sys.argv[2]}, verify=sys.argv[3])
print(r.status_code)`
  const { stdout } = await run('python3', ['-c', script, `https://api.tool.test:${tlsUpstream.port}/py`, sk.proxyUrl, caFile])
  t.equal(stdout.trim(), '200')
  await verifies(tlsUpstream.seen[before]!.headers.authorization)
})
