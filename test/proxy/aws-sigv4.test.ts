import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { signSigV4, type SigV4Target } from '../../src/proxy/inject/aws-sigv4.js'
import { awsKeyCredential, awsKeySet } from '../../src/credentials/aws-keys.js'
import { awsAccessKeyId } from '../../src/proxy/inject/inject.js'
import { systemBinary } from '../helpers/system-binary.js'

const keys = { accessKeyId: 'AKIAUNITTESTKEY00000', secretAccessKey: 'unit/secret+key', sessionToken: 'unit-session-token' }
const base: SigV4Target = {
  tool: 'api',
  service: 'execute-api',
  region: 'eu-west-1',
  method: 'POST',
  pathAndQuery: '/prod/items/a%20b?z=1&a=x%2Fy&flag',
  agentAuthorization: undefined,
  body: Buffer.from('{"n":1}'),
  streamed: false,
  bodyLimit: 1024,
  contentLength: '7',
}
const date = new Date('2026-01-02T03:04:05Z')

const python = await systemBinary('/usr/bin/python3', 'python3-botocore')
let botocore = false
try { if (python.path !== undefined) { execFileSync(python.path, ['-c', 'import botocore']); botocore = true } } catch {}

/** botocore's verdict on a signed header list (test/fixtures/aws/sigv4-judge.py). */
function judge (headers: string[], target: SigV4Target, payloadSha256: string): { ok: boolean, reason: string | null } {
  const pairs: Array<[string, string]> = []
  for (let i = 0; i < headers.length; i += 2) pairs.push([headers[i]!.toLowerCase(), headers[i + 1]!])
  const q = { method: target.method, url: `https://api.example.test${target.pathAndQuery}`, headers: pairs, payload_sha256: payloadSha256 }
  const out = execFileSync(python.path!, [new URL('../fixtures/aws/sigv4-judge.py', import.meta.url).pathname, JSON.stringify({ [keys.accessKeyId]: keys.secretAccessKey })], { input: JSON.stringify(q) + '\n' })
  return JSON.parse(out.toString()) as { ok: boolean, reason: string | null }
}

t.test('a service other than S3: the kept body is hashed, no x-amz-content-sha256 is added, botocore agrees', { skip: botocore ? false : 'botocore not installed' }, async (t) => {
  const headers = ['host', 'api.example.test', 'content-type', 'application/json', 'authorization', 'AWS4-HMAC-SHA256 Credential=sidekey/x', 'x-amz-date', 'old', 'Date', 'old']
  await signSigV4(headers, keys, base, date)
  t.notOk(headers.includes('x-amz-content-sha256'))
  t.equal(headers.filter((h) => h.toLowerCase() === 'authorization').length, 1, 'one Authorization: the agent\'s is gone')
  t.notOk(headers.includes('Date'))
  t.equal(headers[headers.indexOf('x-amz-security-token') + 1], keys.sessionToken)
  t.match(headers[headers.indexOf('authorization') + 1], /SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token,/)
  // The upstream receives content-length from the body's framing; botocore sees it as a header.
  t.same(judge([...headers, 'content-length', '7'], base, createHash('sha256').update(base.body!).digest('hex')), { ok: true, reason: null })
})

t.test('the agent\'s SignedHeaders list is kept: a header it did not sign is not signed either', async (t) => {
  const headers = ['host', 'h.test', 'x-extra', 'added-by-a-middlebox', 'x-amz-content-sha256', 'UNSIGNED-PAYLOAD']
  await signSigV4(headers, { ...keys, sessionToken: undefined }, {
    ...base,
    service: 's3',
    method: 'GET',
    body: undefined,
    contentLength: undefined,
    agentAuthorization: 'AWS4-HMAC-SHA256 Credential=sidekey/20260102/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00',
  }, date)
  t.match(headers[headers.indexOf('authorization') + 1], /SignedHeaders=host;x-amz-content-sha256;x-amz-date,/)
  t.notOk(headers.includes('x-amz-security-token'), 'no session token, no header')
})

t.test('S3 without a payload hash signs UNSIGNED-PAYLOAD and says so', async (t) => {
  const headers = ['host', 'h.test']
  await signSigV4(headers, keys, { ...base, service: 's3', streamed: true, body: undefined }, date)
  t.equal(headers[headers.indexOf('x-amz-content-sha256') + 1], 'UNSIGNED-PAYLOAD')
})

t.test('refusals name the tool and what to do', async (t) => {
  await t.rejects(signSigV4(['host', 'h', 'x-amz-content-sha256', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'], keys, base, date),
    { code: 'SIDEKEY_BAD_REQUEST', status: 400, message: /tool api: .*chunk by chunk/ })
  await t.rejects(signSigV4(['host', 'h', 'x-amz-content-sha256', 'not-a-hash'], keys, base, date), { message: /neither a SHA-256/ })
  await t.rejects(signSigV4(['host', 'h'], keys, { ...base, body: undefined, streamed: true }, date),
    { message: /tool api: .*limits\.replay_body_bytes \(1024 bytes\)/ })
})

t.test('credential_process JSON: shape errors name the source, never a value', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  const ok = awsKeyCredential({ Version: 1, AccessKeyId: 'AKIAX', SecretAccessKey: 's' }, now, 'path /k')
  t.equal(ok.expiresAt, undefined)
  t.same(awsKeySet(ok.token), { accessKeyId: 'AKIAX', secretAccessKey: 's', sessionToken: undefined })
  t.equal(String(ok.token), '[REDACTED]')
  t.throws(() => awsKeyCredential({ Version: 2, AccessKeyId: 'a', SecretAccessKey: 's' }, now, 'path /k'), { message: 'path /k holds AWS keys without "Version": 1' })
  t.throws(() => awsKeyCredential({ Version: 1, AccessKeyId: 'a' }, now, 'path /k'), { message: 'path /k has no usable SecretAccessKey' })
  t.throws(() => awsKeyCredential({ Version: 1, AccessKeyId: 'a', SecretAccessKey: 's', Expiration: 'soon' }, now, 'x'), { message: /not an ISO 8601/ })
  t.throws(() => awsKeyCredential({ Version: 1, AccessKeyId: 'a', SecretAccessKey: 's', Expiration: '2025-01-01T00:00:00Z' }, now, 'x'), { message: /already expired/ })
  t.equal(awsKeySet(new (ok.token.constructor as new (v: string) => typeof ok.token)('x')), undefined)
})

t.test('the placeholder of a SigV4 call is the access key id in Credential=', async (t) => {
  t.equal(awsAccessKeyId('AWS4-HMAC-SHA256 Credential=SIDEKEY/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0'), 'SIDEKEY')
  t.equal(awsAccessKeyId('Bearer x'), undefined)
  t.equal(awsAccessKeyId(undefined), undefined)
})
