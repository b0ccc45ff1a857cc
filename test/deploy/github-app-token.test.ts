// The GitHub App token helper that config/examples/github.yaml runs as an exec issuer, against a loopback
// stand-in for GitHub's API: it must sign a valid app JWT, ask for the narrowed token, and print exactly the
// {"token", "expires_at"} the exec issuer reads — and on failure print nothing on stdout and leak nothing.
import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { decodeProtectedHeader, jwtVerify } from 'jose'
import t from 'tap'
import type { Test } from 'tap'
import { repoPath } from './helpers.js'

const HELPER = repoPath('config/examples/helpers/github-app-token.mjs')

interface Seen { method: string, url: string, authorization: string, body: unknown }

/** A fake GitHub answering every request with `status` and `body`; records what it was sent. */
async function fakeGitHub (t: Test, status: number, body: string): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization ?? '', body: JSON.parse(Buffer.concat(chunks).toString() || 'null') })
      res.writeHead(status, { 'content-type': 'application/json' }).end(body)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

async function runHelper (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  // A clean environment: no proxy variables, so the helper talks to the loopback server directly.
  const child = spawn(process.execPath, [HELPER, ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const [code] = await once(child, 'close') as [number | null]
  return { code, stdout, stderr }
}

// GitHub hands out PKCS#1 ("BEGIN RSA PRIVATE KEY") PEM files. One key for all subtests: RSA generation is slow.
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const keyFile = join(t.testdir({}), 'app.pem')
writeFileSync(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }))

t.test('prints the installation token for the narrowed repositories and permissions', async (t) => {
  const gh = await fakeGitHub(t, 201, JSON.stringify({ token: 'ghs_canary16charsxx', expires_at: '2030-01-01T00:00:00Z', permissions: { contents: 'read' } }))
  const out = await runHelper(['--api-url', gh.url, '--app-id', '4242', '--installation-id', '99', '--private-key', keyFile,
    '--repositories', 'agent-sandbox, docs', '--permissions', 'contents=read,issues=write'])
  t.equal(out.code, 0, out.stderr)
  t.same(JSON.parse(out.stdout), { token: 'ghs_canary16charsxx', expires_at: '2030-01-01T00:00:00Z' }, 'exactly the exec issuer\'s shape')
  t.equal(out.stderr, '')

  t.equal(gh.seen.length, 1)
  const req = gh.seen[0] as Seen
  t.equal(req.method, 'POST')
  t.equal(req.url, '/app/installations/99/access_tokens')
  t.same(req.body, { repositories: ['agent-sandbox', 'docs'], permissions: { contents: 'read', issues: 'write' } })
  const jwt = req.authorization.replace(/^Bearer /, '')
  t.equal(decodeProtectedHeader(jwt).alg, 'RS256')
  const { payload } = await jwtVerify(jwt, publicKey, { issuer: '4242', algorithms: ['RS256'] })
  t.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= 600, 'GitHub accepts at most ten minutes')
})

t.test('a refusal exits non-zero with nothing on stdout and without GitHub\'s body or the JWT', async (t) => {
  const gh = await fakeGitHub(t, 401, JSON.stringify({ message: 'canary-body-text' }))
  const out = await runHelper(['--api-url', gh.url, '--app-id', '1', '--installation-id', '2', '--private-key', keyFile])
  t.equal(out.code, 1)
  t.equal(out.stdout, '')
  t.match(out.stderr, /HTTP 401/)
  t.notMatch(out.stderr, /canary-body-text/)
  t.notMatch(out.stderr, /eyJ/, 'no JWT in the message')
  t.same(gh.seen[0]?.body, {}, 'no narrowing asked for when none is configured')
})

t.test('bad arguments and an unreadable key fail before any request', async (t) => {
  const gh = await fakeGitHub(t, 201, '{}')
  const missing = await runHelper(['--api-url', gh.url, '--app-id', '1', '--private-key', '/nonexistent'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /--installation-id is required/)
  const noKey = await runHelper(['--api-url', gh.url, '--app-id', '1', '--installation-id', '2', '--private-key', '/nonexistent/key.pem'])
  t.equal(noKey.code, 1)
  t.match(noKey.stderr, /cannot read the private key/)
  const badPerm = await runHelper(['--api-url', gh.url, '--app-id', '1', '--installation-id', '2', '--private-key', keyFile, '--permissions', 'contents'])
  t.equal(badPerm.code, 1)
  t.match(badPerm.stderr, /expected name=level/)
  t.equal(gh.seen.length, 0)
})

t.test('a 201 without a token is a failure, not an empty credential', async (t) => {
  const gh = await fakeGitHub(t, 201, JSON.stringify({ expires_at: '2030-01-01T00:00:00Z' }))
  const out = await runHelper(['--api-url', gh.url, '--app-id', '1', '--installation-id', '2', '--private-key', keyFile])
  t.equal(out.code, 1)
  t.equal(out.stdout, '')
})
