#!/usr/bin/env node
// An `exec` issuer helper for sidekey: prints a GitHub App installation token as
//   {"token": "ghs_...", "expires_at": "2030-01-01T00:00:00Z"}
// (the shape sidekey's exec issuer reads). It signs a ten-minute app JWT (RS256) with the App's private key and
// asks GitHub for an installation token, optionally narrowed to some repositories and permissions.
//
//   node github-app-token.mjs --app-id 123456 --installation-id 7654321 \
//     --private-key /run/secrets/sidekey/github-app/private-key.pem \
//     [--repositories repo-a,repo-b] [--permissions contents=read,issues=write] [--api-url https://api.github.com]
//
// Nothing but the token JSON goes to stdout; errors go to stderr without the key, the JWT or GitHub's body.
// Plain JavaScript with no dependency, so it runs from the image's /app/config/examples/helpers/ as it is.
import { createPrivateKey, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

function fail (message) {
  process.stderr.write(`github-app-token: ${message}\n`)
  process.exit(1)
}

const b64url = (data) => Buffer.from(data).toString('base64url')

/** An app JWT: GitHub wants iss = app id, and at most ten minutes between iat and exp. */
function appJwt (appId, key, nowSeconds) {
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))
  // iat 60 s in the past absorbs clock skew, as GitHub recommends.
  const payload = b64url(JSON.stringify({ iss: appId, iat: nowSeconds - 60, exp: nowSeconds + 540 }))
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), key)
  return `${header}.${payload}.${b64url(signature)}`
}

const list = (value) => (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')

let args
try {
  ({ values: args } = parseArgs({
    options: {
      'app-id': { type: 'string' },
      'installation-id': { type: 'string' },
      'private-key': { type: 'string' },
      repositories: { type: 'string' },
      permissions: { type: 'string' },
      'api-url': { type: 'string', default: 'https://api.github.com' },
    },
  }))
} catch (err) {
  fail(err.message)
}
for (const name of ['app-id', 'installation-id', 'private-key']) {
  if (args[name] === undefined || args[name] === '') fail(`--${name} is required`)
}
if (!/^\d+$/.test(args['installation-id'])) fail('--installation-id must be numeric')

let key
try {
  // Accepts the PKCS#1 PEM GitHub hands out as well as PKCS#8.
  key = createPrivateKey(readFileSync(args['private-key']))
} catch (err) {
  fail(`cannot read the private key ${args['private-key']} (${err.code ?? 'invalid key'})`)
}

const body = {}
const repositories = list(args.repositories)
if (repositories.length > 0) body.repositories = repositories
const permissions = list(args.permissions)
if (permissions.length > 0) {
  body.permissions = Object.fromEntries(permissions.map((p) => {
    const [name, level] = p.split('=')
    if (name === undefined || level === undefined || name === '' || level === '') fail(`bad permission ${JSON.stringify(p)}, expected name=level`)
    return [name, level]
  }))
}

const url = `${args['api-url'].replace(/\/+$/, '')}/app/installations/${args['installation-id']}/access_tokens`
let res
try {
  res = await fetch(url, {
    method: 'POST',
    redirect: 'error',
    signal: AbortSignal.timeout(8000),
    headers: {
      authorization: `Bearer ${appJwt(args['app-id'], key, Math.floor(Date.now() / 1000))}`,
      accept: 'application/vnd.github+json',
      'content-type': 'application/json',
      'user-agent': 'sidekey-github-app-token',
      'x-github-api-version': '2022-11-28',
    },
    body: JSON.stringify(body),
  })
} catch (err) {
  fail(`request to GitHub failed (${err.name})`)
}
if (res.status !== 201) fail(`GitHub answered HTTP ${res.status}`)
let json
try {
  json = await res.json()
} catch {
  fail('GitHub answered with invalid JSON')
}
if (typeof json.token !== 'string' || json.token === '' || typeof json.expires_at !== 'string') {
  fail('GitHub answered without token or expires_at')
}
process.stdout.write(JSON.stringify({ token: json.token, expires_at: json.expires_at }) + '\n')
