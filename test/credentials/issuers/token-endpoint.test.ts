import t, { type Test } from 'tap'
import type { ServerResponse } from 'node:http'
import { SignJWT } from 'jose'
import { createClientCredentialsIssuer } from '../../../src/credentials/issuers/oauth2-client-credentials.js'
import { MAX_LIFETIME_MS } from '../../../src/credentials/issuers/token-value.js'
import { DEFAULT_LIFETIME_MS, parseRetryAfter } from '../../../src/credentials/issuers/token-endpoint.js'
import type { ClientCredentialsIssuerConfig } from '../../../src/config/schema.js'
import type { IssuerError } from '../../../src/errors.js'
import { reply, startWireServer, type SeenRequest, type WireServer } from '../../fixtures/issuers/wire-server.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'

const SECRET = 'client-secret-canary-Zq81'
const CANARY = 'tok-canary-9f3e1c77'

async function wire (t: Test, respond: (req: SeenRequest, res: ServerResponse) => void): Promise<WireServer> {
  const server = await startWireServer(respond)
  t.teardown(() => server.close())
  return server
}

function issuerFor (t: Test, server: { url: string }, over: Partial<ClientCredentialsIssuerConfig> = {}) {
  return createClientCredentialsIssuer('idp', {
    type: 'oauth2_client_credentials',
    dpop: false,
    token_url: server.url,
    client_id: 'agent fleet',
    client_secret: SECRET,
    auth_method: 'client_secret_basic',
    audience_param: 'resource',
    timeout: 10_000,
    params: {},
    ...over,
  }, issuerDeps(t))
}

/** The failure leaks nothing: not the client secret, not the canary token, not the body (nor their encodings). */
function assertClean (t: Test, err: IssuerError, body = '') {
  const said = everythingSaidBy(err)
  for (const secret of [SECRET, CANARY, Buffer.from(CANARY).toString('base64'), encodeURIComponent(SECRET)]) {
    t.notMatch(said, secret, 'no secret in the error')
  }
  if (body.length > 12) t.notMatch(said, body, 'no body in the error')
}

t.test('the request on the wire: form, headers, basic auth encoding, scope, resource, params', async (t) => {
  const server = await wire(t, (_req, res) => reply(res, 200, { access_token: CANARY, token_type: 'Bearer', expires_in: 60 }))
  const issuer = issuerFor(t, server, { params: { grant_type: 'password', tenant: 'acme' } })
  const cred = await issuer.fetch(credentialRequest({ scopes: ['a:read', 'b:write'], audience: 'https://api.tool.test' }))
  t.equal(cred.token.reveal(), CANARY)
  t.equal(cred.id, cred.token.fingerprint(), 'an opaque token is known by its fingerprint')
  const [seen] = server.requests
  t.equal(seen!.method, 'POST')
  t.equal(seen!.headers['content-type'], 'application/x-www-form-urlencoded')
  t.equal(seen!.headers.accept, 'application/json')
  // RFC 6749 §2.3.1: "agent fleet" form-urlencodes to "agent+fleet" before base64.
  t.equal(seen!.headers.authorization, `Basic ${Buffer.from(`agent+fleet:${SECRET}`).toString('base64')}`)
  const form = new URLSearchParams(seen!.body)
  t.equal(form.get('grant_type'), 'client_credentials', 'params cannot override the grant')
  t.equal(form.get('scope'), 'a:read b:write')
  t.equal(form.get('resource'), 'https://api.tool.test')
  t.equal(form.get('audience'), null)
  t.equal(form.get('tenant'), 'acme')
  t.equal(form.get('client_secret'), null)
})

t.test('audience_param audience, no scopes: no scope parameter at all', async (t) => {
  const server = await wire(t, (_req, res) => reply(res, 200, { access_token: CANARY, expires_in: 60 }))
  await issuerFor(t, server, { audience_param: 'audience', auth_method: 'client_secret_post' }).fetch(credentialRequest({ audience: 'aud-x' }))
  const form = new URLSearchParams(server.requests[0]!.body)
  t.equal(form.get('audience'), 'aud-x')
  t.equal(form.get('resource'), null)
  t.equal(form.has('scope'), false)
  t.equal(form.get('client_id'), 'agent fleet')
  t.equal(form.get('client_secret'), SECRET)
  t.equal(server.requests[0]!.headers.authorization, undefined)
})

t.test('HTTP errors: status and host named, body and secret never', async (t) => {
  for (const status of [400, 401, 403, 500, 502]) {
    const body = JSON.stringify({ error: 'invalid_client', error_description: `secret ${CANARY} was wrong` })
    const server = await wire(t, (_req, res) => reply(res, status, body))
    const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest()))
    t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
    t.equal(err.message, `token endpoint ${server.host} answered HTTP ${status} (error invalid_client)`)
    t.equal(err.retryAfterMs, undefined)
    assertClean(t, err, body)
  }
})

t.test('429 and 503 carry Retry-After as seconds or as an HTTP date', async (t) => {
  const cases: Array<[number, string, (ms: number | undefined) => boolean]> = [
    [429, '7', (ms) => ms === 7000],
    [503, '0', (ms) => ms === 0],
    [503, new Date(Date.now() + 30_000).toUTCString(), (ms) => ms !== undefined && ms > 20_000 && ms <= 30_000],
    [429, 'soon', (ms) => ms === undefined],
  ]
  for (const [status, header, ok] of cases) {
    const server = await wire(t, (_req, res) => reply(res, status, `<html>${CANARY}</html>`, { 'content-type': 'text/html', 'retry-after': header }))
    const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest()))
    t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
    t.ok(ok(err.retryAfterMs), `${status} Retry-After ${header} -> ${err.retryAfterMs}`)
    assertClean(t, err)
  }
  t.equal(parseRetryAfter('999999'), 3_600_000, 'capped at an hour')
  t.equal(parseRetryAfter(new Date(0).toUTCString()), 0, 'a date in the past means now')
  t.equal(parseRetryAfter(['12', '30']), 12_000)
  t.equal(parseRetryAfter(undefined), undefined)
})

t.test('a redirect is a failure and is never followed', async (t) => {
  const target = await wire(t, (_req, res) => reply(res, 200, { access_token: CANARY, expires_in: 60 }))
  for (const status of [301, 302, 307, 308]) {
    const server = await wire(t, (_req, res) => { res.writeHead(status, { location: target.url }); res.end() })
    const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest()))
    t.equal(err.code, 'SIDEKEY_ISSUER_RESPONSE')
    t.match(err.message, `redirect (HTTP ${status})`)
    assertClean(t, err)
  }
  t.equal(target.requests.length, 0, 'the redirect target got no request (and so no client secret)')
})

t.test('a hanging endpoint: the request signal aborts it, and so does the issuer timeout', async (t) => {
  const server = await wire(t, () => { /* never answers */ })
  const ac = new AbortController()
  void server.nextRequest().then(() => ac.abort())
  const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest({ signal: ac.signal })))
  t.equal(err.code, 'SIDEKEY_ISSUER_TIMEOUT')
  t.match(err.message, 'aborted')

  const timedOut = await issuerFailure(issuerFor(t, server, { timeout: 100 }).fetch(credentialRequest()))
  t.equal(timedOut.code, 'SIDEKEY_ISSUER_TIMEOUT')
  t.match(timedOut.message, 'timed out after 100 ms')
})

t.test('a body that stalls after the headers is aborted too', async (t) => {
  const server = await wire(t, (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.write('{"access_token":') })
  const ac = new AbortController()
  void server.nextRequest().then(() => setImmediate(() => ac.abort()))
  const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest({ signal: ac.signal })))
  t.equal(err.code, 'SIDEKEY_ISSUER_TIMEOUT')
})

t.test('connection refused', async (t) => {
  const server = await startWireServer(() => {})
  const url = server.url
  await server.close()
  const err = await issuerFailure(issuerFor(t, { url }).fetch(credentialRequest()))
  t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
  t.match(err.message, /failed \(ECONNREFUSED\)/)
})

t.test('malformed 200 responses are failures that leak nothing', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['bad JSON', `{"access_token": "${CANARY}", `, /not JSON/],
    ['HTML', `<html><body>${CANARY}</body></html>`, /not JSON/],
    ['a JSON array', `["${CANARY}"]`, /not an object/],
    ['no access_token', JSON.stringify({ token: CANARY, expires_in: 60 }), /no access_token$/],
    ['an error object', JSON.stringify({ error: 'temporarily_unavailable', error_description: CANARY }), /no access_token \(error temporarily_unavailable\)/],
    ['a token echoed as the error code', JSON.stringify({ error: CANARY }), /no access_token$/],
    ['an empty access_token', JSON.stringify({ access_token: '', expires_in: 60 }), /holds no token/],
    ['a numeric access_token', JSON.stringify({ access_token: 12345678, expires_in: 60 }), /holds no token/],
    ['a header-splitting access_token', JSON.stringify({ access_token: `${CANARY}\r\nX-Evil: 1`, expires_in: 60 }), /not allowed in a header/],
    ['token_type MAC', JSON.stringify({ access_token: CANARY, token_type: 'MAC', expires_in: 60 }), /token_type MAC, not Bearer/],
    ['a token_type object', JSON.stringify({ access_token: CANARY, token_type: { CANARY }, expires_in: 60 }), /unusable token_type/],
    ['expires_in negative', JSON.stringify({ access_token: CANARY, expires_in: -5 }), /expires_in/],
    ['expires_in zero', JSON.stringify({ access_token: CANARY, expires_in: 0 }), /expires_in/],
    ['expires_in a string', JSON.stringify({ access_token: CANARY, expires_in: '3600' }), /expires_in/],
    ['expires_in overflowing to Infinity', `{"access_token": "${CANARY}", "expires_in": 1e400}`, /expires_in/],
    ['expires_in null', JSON.stringify({ access_token: CANARY, expires_in: null }), /expires_in/],
  ]
  for (const [what, body, why] of cases) {
    const server = await wire(t, (_req, res) => reply(res, 200, body))
    const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest()))
    t.equal(err.code, 'SIDEKEY_ISSUER_RESPONSE', what)
    t.match(err.message, why, what)
    t.match(err.message, `token endpoint ${server.host}`, what)
    assertClean(t, err, body)
  }
})

t.test('a body over 64 KiB is refused, with or without Content-Length', async (t) => {
  const huge = JSON.stringify({ access_token: CANARY, expires_in: 60, pad: 'x'.repeat(128 * 1024) })
  for (const chunked of [false, true]) {
    const server = await wire(t, (_req, res) => {
      res.writeHead(200, chunked ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', 'content-length': String(huge.length) })
      // Written in pieces: the cap must hold before the end arrives.
      for (let i = 0; i < huge.length; i += 16_384) res.write(huge.slice(i, i + 16_384))
      res.end()
    })
    const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest()))
    t.equal(err.code, 'SIDEKEY_ISSUER_RESPONSE')
    t.match(err.message, 'larger than 65536 bytes')
    assertClean(t, err)
  }
})

t.test('lifetimes: expires_in, capped at 24 h, JWT exp when missing, else one hour', async (t) => {
  const jwtExp = Math.floor(Date.now() / 1000) + 1800
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setJti('jti-42').setExpirationTime(jwtExp).sign(new Uint8Array(32))
  const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) - 10).sign(new Uint8Array(32))
  const cases: Array<[string, object, (c: { issuedAt: number, expiresAt: number | undefined, id: string }) => boolean]> = [
    ['expires_in 120', { access_token: CANARY, token_type: 'bearer', expires_in: 120 }, (c) => c.expiresAt! - c.issuedAt === 120_000],
    ['fractional expires_in', { access_token: CANARY, token_type: 'N_A', expires_in: 1.5 }, (c) => c.expiresAt! - c.issuedAt === 1500],
    ['expires_in 1e12', { access_token: CANARY, expires_in: 1e12 }, (c) => c.expiresAt! - c.issuedAt === MAX_LIFETIME_MS],
    ['no expires_in, opaque', { access_token: CANARY }, (c) => c.expiresAt! - c.issuedAt === DEFAULT_LIFETIME_MS],
    ['no expires_in, JWT', { access_token: jwt }, (c) => c.expiresAt === jwtExp * 1000 && c.id === 'jti-42'],
    ['expires_in wins over the JWT exp', { access_token: jwt, expires_in: 60 }, (c) => c.expiresAt! - c.issuedAt === 60_000],
  ]
  for (const [what, body, ok] of cases) {
    const server = await wire(t, (_req, res) => reply(res, 200, body))
    const cred = await issuerFor(t, server).fetch(credentialRequest())
    t.ok(ok(cred), what)
  }
  const server = await wire(t, (_req, res) => reply(res, 200, { access_token: expired }))
  const err = await issuerFailure(issuerFor(t, server).fetch(credentialRequest()))
  t.equal(err.code, 'SIDEKEY_ISSUER_RESPONSE')
  t.match(err.message, 'already expired')
})
