// Which path segments the audit redacts: credentials in a known shape and random tokens go, what a reader needs to
// tell calls apart (names, versions, numbers, dates, hex ids, UUIDs, short ids, file names) stays.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { auditPath } from '../../src/audit/log.js'
import { pathShape } from '../../src/secrets/path-shape.js'

const DISCORD = 'aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7lM9nO1pQ3rS'
const SLACK = '/services/T0123ABCD/B0456EFGH/xYzAbCdEfGhIjKlMnOpQrStUv'

t.test('credential-shaped segments are replaced by their kind', async (t) => {
  const cases: Array<[string, string]> = [
    [SLACK, '/services/T0123ABCD/B0456EFGH/<redacted:slack_webhook>'],
    ['/services/T0123ABCD/B0456EFGH/x1YzAbCdEfGhIjKlMnOpQrSt', SLACK.replace(/[^/]+$/, '<redacted:slack_webhook>')],
    ['/bot123456789:AAEhBP0av28nQ3yT2BqR4v8Qk1bqzT9ew9E/getMe', '/<redacted:telegram_bot>/getMe'],
    ['/bot123456789%3AAAEhBP0av28nQ3yT2BqR4v8Qk1bqzT9ew9E/getMe', '/<redacted:telegram_bot>/getMe'],
    ['/keys/ghp_0123456789abcdefghijABCDEFGHIJ012345', '/keys/<redacted:ghp_>'],
    ['/x/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', '/x/<redacted:jwt>'],
    ['/x/AKIAIOSFODNN7EXAMPLE/y', '/x/<redacted:AKIA>/y'],
    ['/hook/q7Lm2Xv9Rt4Kp8Zw3Bn6Yc1Hd5Gf0Js2Ua7Ve4Ni', '/hook/<redacted:high_entropy>'],
    ['/hook/x5Fq9Lm2Rt8Vw3Zk7Pb4Nc6D', '/hook/<redacted:high_entropy>'],
    ['/hook/Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA-_Aa', '/hook/<redacted:high_entropy>'],
    [`/api/webhooks/123456789012345678/${DISCORD}`, '/api/webhooks/123456789012345678/<redacted:high_entropy>'],
  ]
  for (const [path, audited] of cases) {
    t.equal(auditPath(path + '?q=1'), audited, path)
    const secrets = path.split('/').filter((segment, i) => segment !== audited.split('/')[i])
    t.notOk(secrets.some((secret) => pathShape(path).includes(secret)), `${path}: the shape has no secret either`)
  }
})

t.test('ordinary segments stay readable', async (t) => {
  const paths = [
    '/v1/chat/completions', '/v2023-10-16/x', '/v1.2.3/releases', '/repos/acme-corp/my_long_resource_name/issues/42',
    '/repos/a/b/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709', '/files/550e8400-e29b-41d4-a716-446655440000',
    '/FILES/550E8400-E29B-41D4-A716-446655440000',
    '/v2/library/ubuntu/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    '/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json', '/v1/customers/cus_NffrFeUfNV2Hib',
    '/watch/dQw4w9WgXcQ', '/functions/ProcessOrdersLambda2024Prod/invocations', '/x/ListObjectsV2ForBucket',
    '/x/MyApplicationServiceV12', '/x/Invoice2024Q3Final.pdf', '/x/node-v20.19.0-linux-x64.tar.gz',
    '/x/DeploymentV2Canary3Stage', '/x/MY_SERVICE_ACCOUNT_2024a', '/x/Screenshot2024-01-01at10.30.00AM.png',
    '/x/iPhone15ProMaxReview2023', '/x/2023-01-01T00:00:00Z', '/x/gpt-4o-mini-2024-07-18', '/services/hooks/incoming',
    '/services/T0123ABCD/B0456EFGH/short', '/users/octocat/repos', '/x/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1A',
  ]
  for (const path of paths) t.equal(auditPath(path), path, path)
})

t.test('random tokens of 40 characters are redacted (20,000 drawn, base62 and base64url)', async (t) => {
  const base62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  let missed = 0
  const runs = 10_000
  for (let i = 0; i < runs; i++) {
    const bytes = randomBytes(40)
    const b62 = Array.from(bytes, (b) => base62[b % 62]).join('')
    const b64 = randomBytes(30).toString('base64url')
    if (!auditPath(`/x/${b62}`).endsWith('<redacted:high_entropy>')) missed++
    if (!auditPath(`/x/${b64}`).endsWith('<redacted:high_entropy>')) missed++
  }
  // Measured about 0.3 %: a token without an upper-case letter or a digit, or one that reads as words.
  t.ok(missed / (2 * runs) < 0.01, `missed ${missed} of ${2 * runs}`)
})
