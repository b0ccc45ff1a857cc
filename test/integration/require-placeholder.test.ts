import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { request, ProxyAgent } from 'undici'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'

const run = promisify(execFile)
const pki = await upstreamPki()
const plain = await startUpstream()
const tls = await startUpstream({ tls: await pki.cert('bearer.tool.test') })
t.teardown(() => plain.close())
t.teardown(() => tls.close())
const dir = t.testdir({})
const awsFile = join(dir, 'aws.json')
writeFileSync(awsFile, JSON.stringify({ Version: 1, AccessKeyId: 'AKIAKEYFORHEADERTOOL', SecretAccessKey: 'shh' }))
const helper = join(dir, 'credential-process.mjs')
writeFileSync(helper, `process.stdout.write(JSON.stringify({ Version: 1, AccessKeyId: 'ASIAFROMEXECHELPER00', SecretAccessKey: 'exec-secret', SessionToken: 'exec-session',
  Expiration: new Date(Date.now() + 3600e3).toISOString() }))`)

const sk = await startSidekey(t, `
instance_id: strict-1
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { bearer.tool.test: 127.0.0.1, query.tool.test: 127.0.0.1, basic.tool.test: 127.0.0.1, wrong.tool.test: 127.0.0.1, exec.tool.test: 127.0.0.1 }
issuers:
  local: { type: local_jwt }
  aws: { type: file, path: ${awsFile} }
  helper: { type: exec, command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(helper)}] }
tools:
  bearer: { match: { host: bearer.tool.test, port: ${tls.port} }, issuer: local, placeholder: sidekey, require_placeholder: true }
  query: { match: { host: query.tool.test, port: ${plain.port} }, issuer: local, plaintext: true, inject: { query: api_key }, placeholder: sidekey, require_placeholder: true }
  basic: { match: { host: basic.tool.test, port: ${plain.port} }, issuer: local, plaintext: true, inject: { basic: { username: bot } }, placeholder: sidekey, require_placeholder: true }
  wrong: { match: { host: wrong.tool.test, port: ${plain.port} }, issuer: aws, plaintext: true }
  exec: { match: { host: exec.tool.test, port: ${plain.port} }, issuer: helper, plaintext: true, inject: { aws_sigv4: { service: execute-api, region: eu-west-1 } } }
`)
const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
t.teardown(() => agent.close())
const call = async (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> => {
  const res = await request(url, { dispatcher: agent, headers })
  return { status: res.statusCode, body: await res.body.text() }
}
const basic = (user: string, pass: string): string => 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64')
const lastUse = (): Record<string, unknown> | undefined => sk.log.events('credential.used').at(-1)

t.test('absolute-form: the placeholder in each placement passes, anything else is refused 403 placeholder_required', async (t) => {
  const before = plain.seen.length
  t.equal((await call(`http://query.tool.test:${plain.port}/s?q=1&api_key=sidekey`)).status, 200, 'query placeholder')
  t.equal((await call(`http://basic.tool.test:${plain.port}/s`, { authorization: basic('bot', 'sidekey') })).status, 200, 'basic placeholder')
  t.equal(plain.seen.length, before + 2)

  for (const [url, headers, placeholder] of [
    [`http://query.tool.test:${plain.port}/s?q=1`, {}, 'absent'],
    [`http://query.tool.test:${plain.port}/s?api_key=sk-live-0123456789abcdef0123`, {}, 'unexpected'],
    [`http://basic.tool.test:${plain.port}/s`, { authorization: basic('bot', 'hunter2-real-password') }, 'unexpected'],
    [`http://basic.tool.test:${plain.port}/s`, {}, 'absent'],
  ] as const) {
    const res = await call(url, headers)
    t.equal(res.status, 403, url)
    t.match(JSON.parse(res.body), { error: 'placeholder_required', tool: /query|basic/ })
    t.match(lastUse(), { status: 403, outcome: 'placeholder_required', placeholder, credential_id: null })
  }
  t.equal(plain.seen.length, before + 2, 'no refused call reached the tool')
  t.notOk(sk.log.text.includes('hunter2-real-password') || sk.log.text.includes('sk-live-0123456789abcdef0123'))
})

t.test('intercepted CONNECT (curl): Bearer placeholder and basic-auth placeholder pass, a real-looking key is refused', async (t) => {
  const ca = join(sk.caDir, 'ca.pem')
  const url = `https://bearer.tool.test:${tls.port}/v1`
  const curl = async (...args: string[]): Promise<string> => (await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', sk.proxyUrl, '--cacert', ca, ...args, url])).stdout
  t.equal(await curl('-H', 'Authorization: Bearer sidekey'), '200')
  t.equal(await curl('-u', 'someone:sidekey'), '200', 'base64(user:sidekey) counts as carried')
  t.equal(await curl('-H', 'Authorization: Bearer ghp_0123456789abcdefghijABCDEFGHIJ0123'), '403')
  t.match(lastUse(), { tool: 'bearer', outcome: 'placeholder_required', placeholder: 'unexpected' })
  t.equal(await curl(), '403')
  t.match(lastUse(), { tool: 'bearer', outcome: 'placeholder_required', placeholder: 'absent' })
})

t.test('AWS keys reach only aws_sigv4 tools; an exec credential_process helper works unchanged', async (t) => {
  const res = await call(`http://wrong.tool.test:${plain.port}/x`, { authorization: 'Bearer sidekey' })
  t.equal(res.status, 503)
  t.match(JSON.parse(res.body), { error: 'credential_unavailable', tool: 'wrong', message: /only an aws_sigv4 tool can use/ })
  t.notOk(res.body.includes('AKIAKEYFORHEADERTOOL'))

  const before = plain.seen.length
  t.equal((await call(`http://exec.tool.test:${plain.port}/prod/x`, { authorization: 'AWS4-HMAC-SHA256 Credential=sidekey/20260101/eu-west-1/execute-api/aws4_request, SignedHeaders=host, Signature=00' })).status, 200)
  const seen = plain.seen[before]!
  t.match(seen.headers.authorization, /^AWS4-HMAC-SHA256 Credential=ASIAFROMEXECHELPER00\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/)
  t.equal(seen.headers['x-amz-security-token'], 'exec-session')
  t.match(lastUse(), { tool: 'exec', status: 200, placeholder: 'stripped' })
})
