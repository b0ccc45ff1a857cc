import t, { type Test } from 'tap'
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { Agent } from 'undici'
import { config as configSchema, type LocalJwtIssuerConfig } from '../../src/config/schema.js'
import { createLocalJwtIssuer } from '../../src/credentials/issuers/local-jwt.js'
import type { CredentialRequest, Issuer } from '../../src/credentials/issuer.js'
import { FakeClock } from './fake-clock.js'

const MIN = 60_000
const HOUR = 60 * MIN

function localJwtConfig (extra: Record<string, unknown> = {}): LocalJwtIssuerConfig {
  const parsed = configSchema.parse({ instance_id: 'x', issuers: { local: { type: 'local_jwt', ...extra } }, tools: {} })
  return parsed.issuers.local as LocalJwtIssuerConfig
}

function setup (t: Test, extra: Record<string, unknown> = {}): { clock: FakeClock, issuer: Issuer } {
  const clock = new FakeClock()
  const dispatcher = new Agent()
  const issuer = createLocalJwtIssuer('local', localJwtConfig(extra), { clock, dispatcher })
  t.teardown(async () => { await issuer.close?.(); await dispatcher.close() })
  return { clock, issuer }
}

const request = (over: Partial<CredentialRequest> = {}): CredentialRequest => ({
  tool: 'github', scopes: ['repo:read', 'issues:write'], audience: 'https://api.github.test', instanceId: 'agent-7', signal: new AbortController().signal, ...over,
})

async function verify (token: string, issuer: Issuer, clock: FakeClock): Promise<Record<string, unknown>> {
  const jwks = createLocalJWKSet({ keys: [...(issuer.jwks?.() ?? [])] as never })
  const { payload } = await jwtVerify(token, jwks, { currentDate: new Date(clock.now()) })
  return payload as Record<string, unknown>
}

t.test('tokens carry exactly iss, sub, aud, scope, tool, jti, iat, exp and verify against jwks()', async (t) => {
  const { clock, issuer } = setup(t, { issuer: 'https://sidekey.test', ttl: '10m' })
  const cred = await issuer.fetch(request())
  const payload = await verify(cred.token.reveal(), issuer, clock)
  const iat = Math.floor(clock.now() / 1000)
  t.same(payload, {
    iss: 'https://sidekey.test',
    sub: 'agent-7',
    aud: 'https://api.github.test',
    scope: 'repo:read issues:write',
    tool: 'github',
    jti: cred.id,
    iat,
    exp: iat + 600,
  })
  t.match(cred.id, /^[0-9a-f-]{36}$/, 'jti is a random UUID')
  t.equal(cred.issuedAt, iat * 1000)
  t.equal(cred.expiresAt, (iat + 600) * 1000)
  const header = decodeProtectedHeader(cred.token.reveal())
  t.equal(header.alg, 'ES256', 'ES256 by default')
  const [key] = issuer.jwks?.() ?? []
  t.equal(header.kid, key?.kid)
  t.equal(key?.kid, await calculateJwkThumbprint(key as never, 'sha256'), 'kid is the RFC 7638 thumbprint')
  t.same(Object.keys(key ?? {}).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'], 'public members only')
  const other = await issuer.fetch(request())
  t.not(other.id, cred.id, 'every token has its own jti')
})

t.test('aud is omitted without an audience, scope without scopes', async (t) => {
  const { clock, issuer } = setup(t)
  const cred = await issuer.fetch(request({ audience: undefined, scopes: [] }))
  const payload = await verify(cred.token.reveal(), issuer, clock)
  t.same(Object.keys(payload).sort(), ['exp', 'iat', 'iss', 'jti', 'sub', 'tool'])
  t.equal(payload.iss, 'https://sidekey.local', 'the default issuer')
})

t.test('every configured alg signs tokens that verify', async (t) => {
  for (const alg of ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA']) {
    const { clock, issuer } = setup(t, { alg })
    const cred = await issuer.fetch(request())
    t.equal(decodeProtectedHeader(cred.token.reveal()).alg, alg)
    t.equal((await verify(cred.token.reveal(), issuer, clock)).jti, cred.id, alg)
  }
})

t.test('key rotation: old tokens verify through the overlap, then the old key is dropped', async (t) => {
  const { clock, issuer } = setup(t, { ttl: '10m', rotate_every: '1h', overlap: '30m' })
  await issuer.fetch(request()) // the first key exists once a fetch returns
  await clock.advance(59 * MIN)
  const before = await issuer.fetch(request())
  const oldKid = decodeProtectedHeader(before.token.reveal()).kid
  await clock.advance(1 * MIN)
  const after = await issuer.fetch(request())
  const newKid = decodeProtectedHeader(after.token.reveal()).kid
  t.not(newKid, oldKid, 'a new signing key after rotate_every')
  t.same(issuer.jwks?.().map((k) => k.kid), [newKid, oldKid], 'current and previous keys are listed')
  t.equal((await verify(before.token.reveal(), issuer, clock)).jti, before.id, 'a token signed before the rotation still verifies')
  t.equal((await verify(after.token.reveal(), issuer, clock)).jti, after.id)

  await clock.advance(30 * MIN)
  t.same(issuer.jwks?.().map((k) => k.kid), [newKid], 'the previous key is gone after the overlap')
  const jwks = createLocalJWKSet({ keys: [...(issuer.jwks?.() ?? [])] as never })
  await t.rejects(jwtVerify(before.token.reveal(), jwks, { currentDate: new Date(before.issuedAt) }), { code: 'ERR_JWKS_NO_MATCHING_KEY' },
    'its key is no longer published')
})

t.test('the previous key stays at least ttl when the overlap is shorter', async (t) => {
  const { clock, issuer } = setup(t, { ttl: '10m', rotate_every: '1h', overlap: '1m' })
  await issuer.fetch(request())
  await clock.advance(HOUR - 1000)
  const before = await issuer.fetch(request())
  await clock.advance(1000)
  await issuer.fetch(request())
  await clock.advance(9 * MIN)
  t.equal(issuer.jwks?.().length, 2, 'still listed past the 1 min overlap')
  t.equal((await verify(before.token.reveal(), issuer, clock)).jti, before.id, 'its last token verifies until it expires')
  await clock.advance(1 * MIN)
  t.equal(issuer.jwks?.().length, 1)
})

t.test('rotation is driven by the clock alone, and close() clears the timer', async (t) => {
  const { clock, issuer } = setup(t, { ttl: '10m', rotate_every: '1h', overlap: '1h' })
  await issuer.fetch(request())
  const first = issuer.jwks?.().map((k) => k.kid)
  t.equal(clock.pending, 1, 'one timer: the next rotation')
  await clock.advance(HOUR)
  // Key generation is real crypto off the fake clock: wait for it through a fetch, which joins it.
  await issuer.fetch(request())
  const second = issuer.jwks?.().map((k) => k.kid) ?? []
  t.equal(second.length, 2)
  t.equal(second[1], first?.[0], 'the old key became the previous one')
  await issuer.close?.()
  t.equal(clock.pending, 0, 'no timer left after close')
})
