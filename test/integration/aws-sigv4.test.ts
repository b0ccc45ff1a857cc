import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, renameSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, CreateMultipartUploadCommand, UploadPartCommand,
  CompleteMultipartUploadCommand, type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { Agent as HttpsAgent } from 'node:https'
import { Readable } from 'node:stream'
import { startSidekey } from '../helpers/sidekey.js'
import { upstreamPki } from '../helpers/upstream.js'
import { needBinary, systemBinary } from '../helpers/system-binary.js'
import { startJudgedS3 } from '../fixtures/aws/s3-behind-judge.js'
import { AbsoluteFormAgent, TunnelAgent } from '../fixtures/aws/proxy-agents.js'
import { Secret } from '../../src/util/secret.js'

const python = await systemBinary('/usr/bin/python3', 'python3-botocore')
// botocore is a module, not a binary: a python3 without it counts as missing.
const hasBotocore = python.path !== undefined && await import('node:child_process')
  .then(({ execFileSync }) => { try { execFileSync(python.path!, ['-c', 'import botocore']); return true } catch { return false } })
const skip = hasBotocore ? false : python.skip === false ? false : python.skip

const KEY_A = { AccessKeyId: 'ASIAREALKEYAAAAAAAAA', SecretAccessKey: 'real-secret-A/' + randomBytes(12).toString('base64url'), SessionToken: 'session-A-' + randomBytes(24).toString('base64url') }
const KEY_B = { AccessKeyId: 'AKIAREALKEYBBBBBBBBB', SecretAccessKey: 'real-secret-B+' + randomBytes(12).toString('base64url') }
const PLACEHOLDER = { accessKeyId: 'SIDEKEYPLACEHOLDER', secretAccessKey: 'placeholder-secret' }

t.test('S3 through sidekey: the AWS SDK signs with placeholder keys, botocore verifies the re-signed requests', { skip }, async (t) => {
  if (!hasBotocore && !needBinary(t, { ...python, path: undefined })) return
  const pki = await upstreamPki()
  const caPem = readFileSync(pki.caFile, 'utf8')
  const s3 = await startJudgedS3(python.path!, { [KEY_A.AccessKeyId]: KEY_A.SecretAccessKey, [KEY_B.AccessKeyId]: KEY_B.SecretAccessKey }, await pki.cert('s3.tool.test'), caPem)
  t.teardown(() => s3.close())

  const dir = mkdtempSync(join(tmpdir(), 'sidekey-aws-keys-'))
  const keyFile = join(dir, 'aws.json')
  const writeKeys = (keys: object, expiresInMs: number): void => {
    writeFileSync(join(dir, 'next.json'), JSON.stringify({ Version: 1, ...keys, Expiration: new Date(Date.now() + expiresInMs).toISOString() }, null, 2))
    renameSync(join(dir, 'next.json'), keyFile)
  }
  writeKeys(KEY_A, 3_600_000)

  const sk = await startSidekey(t, `
instance_id: agent-aws
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { s3.tool.test: 127.0.0.1 }
issuers:
  aws: { type: file, path: ${keyFile} }
tools:
  s3:
    match: { host: s3.tool.test, port: ${s3.port} }
    issuer: aws
    inject: { aws_sigv4: { service: s3, region: us-east-1 } }
    placeholder: ${PLACEHOLDER.accessKeyId}
    require_placeholder: true
`)
  const sidekeyCa = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
  const client = (how: 'connect' | 'absolute', extra: Partial<S3ClientConfig> = {}): S3Client => new S3Client({
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: PLACEHOLDER,
    endpoint: `${how === 'connect' ? 'https' : 'http'}://s3.tool.test:${s3.port}`,
    requestHandler: new NodeHttpHandler(how === 'connect' ? { httpsAgent: new TunnelAgent(sk.proxyPort, sidekeyCa) } : { httpAgent: new AbsoluteFormAgent(sk.proxyPort) }),
    maxAttempts: 1,
    // The absolute-form agent cannot rewrite a head Node renders early for Expect: 100-continue (CONNECT covers Expect).
    ...(how === 'absolute' ? { expectContinueHeader: false } : {}),
    ...extra,
  })
  const rejected = (): number => s3.verdicts.filter((v) => !v.ok).length

  for (const how of ['connect', 'absolute'] as const) {
    t.test(`${how === 'connect' ? 'intercepted CONNECT' : 'absolute-form http'}: PutObject 5 MiB, GetObject, ListObjectsV2, multipart upload`, async (t) => {
      const s3c = client(how)
      t.teardown(() => s3c.destroy())
      const before = s3.verdicts.length
      const body = randomBytes(5 * 1024 * 1024)
      const key = `${how}/dir/a key with spaces+plus.bin`
      const put = await s3c.send(new PutObjectCommand({ Bucket: 'bucket', Key: key, Body: body }))
      t.ok(put.ETag, 'PutObject answered with an ETag')
      const got = await s3c.send(new GetObjectCommand({ Bucket: 'bucket', Key: key }))
      t.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body), 'GetObject returns the 5 MiB exactly')
      const list = await s3c.send(new ListObjectsV2Command({ Bucket: 'bucket', Prefix: `${how}/dir/a key` }))
      t.same(list.Contents?.map((c) => c.Key), [key], 'ListObjectsV2 with a prefix finds the key')

      const mpKey = `${how}/multi part+key`
      const { UploadId } = await s3c.send(new CreateMultipartUploadCommand({ Bucket: 'bucket', Key: mpKey }))
      const part1 = randomBytes(5 * 1024 * 1024)
      const part2 = randomBytes(1000)
      const p1 = await s3c.send(new UploadPartCommand({ Bucket: 'bucket', Key: mpKey, UploadId, PartNumber: 1, Body: part1 }))
      const p2 = await s3c.send(new UploadPartCommand({ Bucket: 'bucket', Key: mpKey, UploadId, PartNumber: 2, Body: part2 }))
      await s3c.send(new CompleteMultipartUploadCommand({
        Bucket: 'bucket', Key: mpKey, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] },
      }))
      const whole = await s3c.send(new GetObjectCommand({ Bucket: 'bucket', Key: mpKey }))
      t.ok(Buffer.from(await whole.Body!.transformToByteArray()).equals(Buffer.concat([part1, part2])), 'the multipart object reads back whole')

      // A stream body of known length: the SDK sends it aws-chunked with a CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
      const streamed = randomBytes(300_000)
      await s3c.send(new PutObjectCommand({ Bucket: 'bucket', Key: `${how}/streamed`, Body: Readable.from([streamed.subarray(0, 100_000), streamed.subarray(100_000)]), ContentLength: streamed.length }))
      const back = await s3c.send(new GetObjectCommand({ Bucket: 'bucket', Key: `${how}/streamed` }))
      t.ok(Buffer.from(await back.Body!.transformToByteArray()).equals(streamed), 'a streamed PutObject reads back whole')

      const mine = s3.verdicts.slice(before)
      t.equal(mine.length, 10, 'every call reached the judge')
      t.same(mine.filter((v) => !v.ok), [], 'botocore accepted every signature')
      t.ok(mine.every((v) => v.keyId === KEY_A.AccessKeyId), 'every call was signed with the real key')
      t.comment(`payload hashes the SDK sent: ${[...new Set(mine.map((v) => v.payloadHash?.length === 64 ? 'sha256-hex' : v.payloadHash))].join(', ')}`)
      const used = sk.log.events('credential.used').filter((e) => e.tool === 's3').slice(-10)
      t.ok(used.every((e) => e.credential_id === new Secret(KEY_A.AccessKeyId).fingerprint() && e.placeholder === 'stripped' && e.status === 200), 'audited with the key id fingerprint')
    })
  }

  t.test('the judge is a judge: real keys sent directly pass, a wrong secret is refused', async (t) => {
    const direct = (secretAccessKey: string): S3Client => new S3Client({
      region: 'us-east-1',
      forcePathStyle: true,
      maxAttempts: 1,
      endpoint: `https://s3.tool.test:${s3.port}`,
      credentials: { accessKeyId: KEY_B.AccessKeyId, secretAccessKey },
      // Straight to the judge (s3.tool.test is only a name: the agent dials 127.0.0.1 with that SNI).
      requestHandler: new NodeHttpHandler({ httpsAgent: new HttpsAgent({ ca: caPem, lookup: (_h, _o, cb) => { cb(null, [{ address: '127.0.0.1', family: 4 }]) } }) }),
    })
    const good = direct(KEY_B.SecretAccessKey)
    const bad = direct(KEY_B.SecretAccessKey + 'x')
    t.teardown(() => { good.destroy(); bad.destroy() })
    await good.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'control', Body: 'ok' }))
    const before = rejected()
    await t.rejects(bad.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'control', Body: 'no' })), { name: 'SignatureDoesNotMatch' })
    t.equal(rejected(), before + 1)
  })

  t.test('require_placeholder: the real key id sent through the proxy is refused and audited', async (t) => {
    const leaked = new S3Client({
      ...{ region: 'us-east-1', forcePathStyle: true, maxAttempts: 1 },
      endpoint: `https://s3.tool.test:${s3.port}`,
      credentials: { accessKeyId: KEY_A.AccessKeyId, secretAccessKey: KEY_A.SecretAccessKey },
      requestHandler: new NodeHttpHandler({ httpsAgent: new TunnelAgent(sk.proxyPort, sidekeyCa) })
    })
    t.teardown(() => leaked.destroy())
    const reached = s3.verdicts.length
    const err = await leaked.send(new ListObjectsV2Command({ Bucket: 'bucket' })).then(() => undefined, (e: { $metadata?: { httpStatusCode?: number } }) => e)
    t.equal(err?.$metadata?.httpStatusCode, 403)
    t.equal(s3.verdicts.length, reached, 'nothing reached S3')
    t.match(sk.log.events('credential.used').at(-1), { tool: 's3', status: 403, outcome: 'placeholder_required', placeholder: 'unexpected', credential_id: null })
  })

  t.test('rotation: the key file is swapped for a new pair mid-traffic and no call fails', async (t) => {
    const s3c = client('connect')
    t.teardown(() => s3c.destroy())
    const newId = new Secret(KEY_B.AccessKeyId).fingerprint()
    let swapped = false
    let calls = 0
    for (let i = 0; i < 400; i++) {
      await s3c.send(new PutObjectCommand({ Bucket: 'bucket', Key: `rotation/${i}`, Body: `n${i}` }))
      calls++
      if (i === 2) { writeKeys(KEY_B, 3_600_000); swapped = true }
      if (swapped && s3.verdicts.at(-1)?.keyId === KEY_B.AccessKeyId) break
    }
    t.equal(s3.verdicts.at(-1)?.keyId, KEY_B.AccessKeyId, `the new key signs after the swap (${calls} calls, none failed)`)
    t.ok(sk.log.events('credential.issued').some((e) => e.credential_id === newId))
  })

  t.test('no secret, session token or real key id in any log line', async (t) => {
    for (const k of [KEY_A.SecretAccessKey, KEY_A.SessionToken, KEY_B.SecretAccessKey, KEY_A.AccessKeyId, KEY_B.AccessKeyId]) t.notOk(sk.log.text.includes(k))
  })
})
