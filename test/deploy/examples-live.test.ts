// The service examples in config/examples/ do what their headers say, run as shipped against a local stand-in for
// the service: the agent sends only the placeholder its header names, the service reads the real credential where
// its API expects it, and a call the example refuses never reaches the service.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { parse, stringify } from 'yaml'
import { ProxyAgent, request } from 'undici'
import { SignatureV4 } from '@smithy/signature-v4'
import { Hash } from '@smithy/hash-node'
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki, type Upstream } from '../helpers/upstream.js'
import { TunnelAgent } from '../fixtures/aws/proxy-agents.js'
import { readRepoFile, type Obj } from './helpers.js'

const REAL = `real-${randomBytes(16).toString('hex')}`
const AWS_KEYS = {
  Version: 1, AccessKeyId: 'AKIAREALKEY000000000', SecretAccessKey: `real/${randomBytes(20).toString('base64url')}`,
}

interface Served {
  sk: RunningSidekey
  upstream: Upstream
  sidekeyCa: string
  call: (path: string, init?: Call) => Promise<Answer>
}
interface Call { method?: string, headers?: Record<string, string>, body?: string }
interface Answer { status: number, proxyStatus: string | undefined, text: string }

/**
 * Runs sidekey on an example, changed only where a test must: the CA in a temp dir, the issuers' files holding
 * the test credential, and `host` pinned to a TLS upstream on 127.0.0.1 that a test CA vouches for.
 */
async function serve (t: Test, name: string, host: string, edit: (cfg: Obj) => void = () => {}): Promise<Served> {
  const cfg = parse(readRepoFile(`config/examples/${name}`)) as Obj
  const pki = await upstreamPki()
  const upstream = await startUpstream({ tls: await pki.cert(host) })
  t.teardown(() => upstream.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-example-'))
  for (const [issuer, def] of Object.entries(cfg.issuers as Obj)) {
    def.path = join(dir, issuer)
    writeFileSync(def.path, /aws_sigv4/.test(JSON.stringify(cfg.tools)) ? JSON.stringify(AWS_KEYS) : REAL)
  }
  for (const tool of Object.values(cfg.tools as Obj)) if (tool.match.host === host) tool.match.port = upstream.port
  Object.assign(cfg, { ca: { dir: '{{CA_DIR}}' }, resolve: { [host]: '127.0.0.1' }, upstream_ca_file: pki.caFile })
  edit(cfg)
  const sk = await startSidekey(t, stringify(cfg))
  const sidekeyCa = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: sidekeyCa } })
  t.teardown(() => agent.close())
  const call = async (path: string, init: Call = {}): Promise<Answer> => {
    const res = await request(`https://${host}:${upstream.port}${path}`, {
      dispatcher: agent, method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body,
    })
    const proxyStatus = res.headers['proxy-status'] as string | undefined
    return { status: res.statusCode, proxyStatus, text: await res.body.text() }
  }
  return { sk, upstream, sidekeyCa, call }
}

interface Target { host: string, port: number, path: string }
/** The agent's SDK signing with the placeholder keys its example names. */
async function signAsAgent (service: string, at: Target, body: string): Promise<Record<string, string>> {
  const credentials = { accessKeyId: 'SIDEKEY', secretAccessKey: 'sidekey' }
  const signer = new SignatureV4({ service, region: 'us-east-1', credentials, sha256: Hash.bind(null, 'sha256') })
  const signed = await signer.sign({
    method: 'POST',
    protocol: 'https:',
    hostname: at.host,
    port: at.port,
    path: at.path,
    query: {},
    body,
    headers: { host: `${at.host}:${at.port}`, 'content-type': 'application/json' },
  })
  return signed.headers
}

const awsScope = (auth: string | undefined): string | undefined => /Credential=([^,]+)/.exec(auth ?? '')?.[1]
/** The SigV4 credential scope of the real key set, for a signing name. */
const realScope = (service: string): RegExp =>
  new RegExp(`^${AWS_KEYS.AccessKeyId}/\\d{8}/us-east-1/${service}/aws4_request$`)

t.test('Gemini: x-goog-api-key: sidekey becomes the real key; the commented query form injects key=', async (t) => {
  const host = 'generativelanguage.googleapis.com'
  const { upstream, call } = await serve(t, 'gemini.yaml', host)
  const res = await call('/v1beta/models/gemini-2.5-flash:generateContent', {
    method: 'POST', headers: { 'x-goog-api-key': 'sidekey' }, body: '{}',
  })
  t.equal(res.status, 200)
  t.equal(upstream.seen[0]?.headers['x-goog-api-key'], REAL)

  // The alternative the file's header offers, taken from the comment itself so that it cannot drift.
  const line = /^#\s+(inject: \{ query: key \})$/m.exec(readRepoFile('config/examples/gemini.yaml'))?.[1]
  t.ok(line, 'gemini.yaml shows the query form')
  const inQuery = (cfg: Obj): void => { cfg.tools.gemini.inject = (parse(line ?? '') as Obj).inject }
  const query = await serve(t, 'gemini.yaml', host, inQuery)
  t.equal((await query.call('/v1beta/models?pageSize=5&key=sidekey')).status, 200)
  t.equal(query.upstream.seen[0]?.url, `/v1beta/models?pageSize=5&key=${REAL}`)
})

t.test('Azure OpenAI: api-key: sidekey becomes the real key, and no Authorization goes upstream', async (t) => {
  const { upstream, call } = await serve(t, 'azure-openai.yaml', 'acme-agents.openai.azure.com')
  const res = await call('/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21', {
    method: 'POST', headers: { 'api-key': 'sidekey', authorization: 'Bearer sidekey' }, body: '{}',
  })
  t.equal(res.status, 200)
  t.equal(upstream.seen[0]?.headers['api-key'], REAL)
  t.equal(upstream.seen[0]?.headers.authorization, undefined)
})

t.test('GitLab: a Bearer placeholder becomes PRIVATE-TOKEN on an escaped project path; git gets basic', async (t) => {
  const { upstream, call } = await serve(t, 'gitlab.yaml', 'gitlab.com')
  const bearer = { authorization: 'Bearer sidekey' }
  const api = await call('/api/v4/projects/acme%2Fagent-sandbox/issues', { headers: bearer })
  t.equal(api.status, 200)
  t.equal(upstream.seen[0]?.url, '/api/v4/projects/acme%2Fagent-sandbox/issues', 'the escaped slash reaches GitLab')
  t.equal(upstream.seen[0]?.headers['private-token'], REAL)
  t.equal(upstream.seen[0]?.headers.authorization, undefined)
  t.equal((await call('/acme/agent-sandbox.git/info/refs?service=git-upload-pack')).status, 200)
  t.equal(upstream.seen[1]?.headers.authorization, `Basic ${Buffer.from(`oauth2:${REAL}`).toString('base64')}`)
})

t.test('Slack: Bearer xoxb-sidekey becomes the bot token; a call without it is refused before Slack', async (t) => {
  const { upstream, call } = await serve(t, 'slack.yaml', 'slack.com')
  const post = await call('/api/chat.postMessage', {
    method: 'POST', headers: { authorization: 'Bearer xoxb-sidekey' }, body: '{}',
  })
  t.equal(post.status, 200)
  t.equal(upstream.seen[0]?.headers.authorization, `Bearer ${REAL}`)
  const form = await call('/api/chat.postMessage', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'token=xoxb-sidekey&channel=C1&text=hi',
  })
  t.equal(form.status, 403)
  t.match(form.text, /placeholder_required/)
  t.match(form.proxyStatus, /^sidekey; error=/, 'the reason is in Proxy-Status too')
  t.equal(upstream.seen.length, 1, 'the token-in-body call never reached Slack')
})

t.test('S3: the SDK signs with SIDEKEY, S3 sees the real key; another key is a 403 with a Proxy-Status', async (t) => {
  const host = 'acme-agent-artifacts.s3.us-east-1.amazonaws.com'
  const { sk, upstream, sidekeyCa } = await serve(t, 's3.yaml', host)
  const s3 = (accessKeyId: string): S3Client => new S3Client({
    region: 'us-east-1',
    credentials: { accessKeyId, secretAccessKey: 'sidekey' },
    maxAttempts: 1,
    endpoint: `https://s3.us-east-1.amazonaws.com:${upstream.port}`,
    requestHandler: new NodeHttpHandler({ httpsAgent: new TunnelAgent(sk.proxyPort, sidekeyCa) }),
  })
  const agent = s3('SIDEKEY')
  t.teardown(() => agent.destroy())
  await agent.send(new PutObjectCommand({ Bucket: 'acme-agent-artifacts', Key: 'run-1/out.txt', Body: 'hello' }))
  t.match(awsScope(upstream.seen[0]?.headers.authorization), realScope('s3'))

  const leaked = s3('AKIALEFTINTHEAGENT00')
  t.teardown(() => leaked.destroy())
  const put = new PutObjectCommand({ Bucket: 'acme-agent-artifacts', Key: 'x', Body: 'x' })
  const err = await leaked.send(put).catch((e: unknown) => e) as Obj
  t.equal(err.$metadata?.httpStatusCode, 403, 'the SDK reports a bare 403')
  t.match(err.$response?.headers?.['proxy-status'], /^sidekey; error=/, 'the reason travels in Proxy-Status')
  t.equal(upstream.seen.length, 1, 'nothing signed with the wrong key reached S3')
  t.ok(sk.log.lines.some((l) => JSON.stringify(l).includes('placeholder_required')), 'the audit line names the reason')
})

t.test('Bedrock: Converse signed with SIDEKEY reaches Bedrock signed with the real key, service bedrock', async (t) => {
  const host = 'bedrock-runtime.us-east-1.amazonaws.com'
  const { upstream, call } = await serve(t, 'bedrock.yaml', host)
  const path = '/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse'
  const body = JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'hi' }] }] })
  const headers = await signAsAgent('bedrock', { host, port: upstream.port, path }, body)
  const res = await call(path, { method: 'POST', headers, body })
  t.equal(res.status, 200)
  t.match(awsScope(upstream.seen[0]?.headers.authorization), realScope('bedrock'))
  t.equal(upstream.seen[0]?.body.toString(), body)
})
