// Per-request CPU of the credential shapes that compute something per call: SigV4 re-signing and DPoP proofs.
// Run: TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/credential-shapes.ts
// CPU time (process.cpuUsage) over N calls after a warm-up; wall time is printed too but moves with machine load.
import { signSigV4, type SigV4Target } from '../../src/proxy/inject/aws-sigv4.js'
import { DpopKey } from '../../src/credentials/dpop.js'

const N = Number(process.env.N ?? 20_000)
const keys = { accessKeyId: 'AKIAMEASURE000000000', secretAccessKey: 'secret/measure', sessionToken: 'tok'.repeat(100) }
const s3: SigV4Target = {
  tool: 't',
  service: 's3',
  region: 'us-east-1',
  method: 'GET',
  pathAndQuery: '/bucket/some/key%20x?list-type=2&prefix=a%2Fb',
  agentAuthorization: 'AWS4-HMAC-SHA256 Credential=SIDEKEY/20260101/us-east-1/s3/aws4_request, ' +
    'SignedHeaders=amz-sdk-invocation-id;amz-sdk-request;host;x-amz-content-sha256;x-amz-date;x-amz-user-agent, Signature=00',
  body: undefined,
  streamed: false,
  bodyLimit: 1 << 20,
  contentLength: undefined,
}
// What the AWS SDK for JavaScript v3 sends for a GetObject, as sidekey holds it after stripping.
const s3Headers = ['host', 's3.example.com', 'x-amz-content-sha256', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  'amz-sdk-invocation-id', 'abc', 'amz-sdk-request', 'attempt=1; max=3', 'x-amz-user-agent', 'aws-sdk-js/3', 'user-agent', 'aws-sdk-js/3 ua/2.1']

async function bench (name: string, fn: () => unknown): Promise<void> {
  for (let i = 0; i < 2000; i++) await fn()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < N; i++) await fn()
  const cpu = process.cpuUsage(cpu0)
  const wall = performance.now() - t0
  console.log(`${name.padEnd(48)} ${((cpu.user + cpu.system) / N).toFixed(1).padStart(6)} µs CPU/request  ${(wall * 1000 / N).toFixed(1).padStart(6)} µs wall`)
}

await bench('sigv4: s3 GET, 6 signed headers, session token', () => signSigV4(s3Headers.slice(), keys, s3))
await bench('sigv4: execute-api POST, 1 KiB body hashed', () => signSigV4(['host', 'api.example.com', 'content-type', 'application/json'], keys,
  { ...s3, service: 'execute-api', method: 'POST', agentAuthorization: undefined, body: Buffer.alloc(1024), contentLength: '1024' }))
const key = new DpopKey()
const token = 'eyJ' + 'a'.repeat(800)
await bench('dpop: ES256 proof with ath and nonce', () => key.proof('GET', 'https://api.example.com/v1/items?q=1', token))
