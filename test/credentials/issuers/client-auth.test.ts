import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { decodeProtectedHeader, jwtVerify } from 'jose'
import { createClientAuth, formEncode } from '../../../src/credentials/issuers/client-auth.js'
import { createTokenExchangeIssuer } from '../../../src/credentials/issuers/oauth2-token-exchange.js'
import { SidekeyError } from '../../../src/errors.js'
import { reply, startWireServer } from '../../fixtures/issuers/wire-server.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'

const TOKEN_URL = 'https://idp.example.test/oauth2/token'

t.test('config mistakes are refused when the issuer is built', async (t) => {
  const cases: Array<[Parameters<typeof createClientAuth>[1], RegExp]> = [
    [{ auth_method: 'client_secret_basic', client_secret: 's' }, /needs client_id/],
    [{ auth_method: 'client_secret_post', client_id: 'c' }, /needs client_secret_file or client_secret/],
    [{ auth_method: 'client_secret_basic', client_id: 'c', client_secret: 'config-canary', client_secret_file: '/x' }, /not both/],
    [{ auth_method: 'private_key_jwt', client_id: 'c' }, /needs private_key_file/],
    [{ auth_method: 'private_key_jwt', private_key_file: '/k' }, /needs client_id/],
  ]
  for (const [config, why] of cases) {
    const err = t.throws(() => createClientAuth('corp', config, TOKEN_URL)) as SidekeyError
    t.equal(err.code, 'SIDEKEY_CONFIG_INVALID')
    t.match(err.message, /^issuers\.corp: /)
    t.match(err.message, why)
    t.notMatch(err.message, 'config-canary')
  }
})

t.test('form encoding per RFC 6749 Appendix B', async (t) => {
  t.equal(formEncode('a b+c/d:e%f~'), 'a+b%2Bc%2Fd%3Ae%25f%7E')
  const headers: Record<string, string> = {}
  await createClientAuth('c', { auth_method: 'client_secret_basic', client_id: 'id:1', client_secret: 'p w' }, TOKEN_URL).apply(new URLSearchParams(), headers)
  t.equal(Buffer.from(headers.authorization!.slice('Basic '.length), 'base64').toString(), 'id%3A1:p+w')
})

t.test('auth_method none sends client_id only when there is one', async (t) => {
  const withId = new URLSearchParams()
  const headers: Record<string, string> = {}
  await createClientAuth('c', { auth_method: 'none', client_id: 'public-1' }, TOKEN_URL).apply(withId, headers)
  t.same([...withId], [['client_id', 'public-1']])
  t.same(headers, {})
  const without = new URLSearchParams()
  await createClientAuth('c', { auth_method: 'none' }, TOKEN_URL).apply(without, {})
  t.same([...without], [])
})

t.test('private_key_jwt assertions: RS256 for RSA, ES384 for P-384, claims per RFC 7523', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
  const sec1 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const dir = t.testdir({
    'rsa.pem': rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    'p384.pem': p384.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    'sec1.pem': sec1.privateKey.export({ type: 'sec1', format: 'pem' }).toString(),
  })
  for (const [file, pub, alg] of [['rsa.pem', rsa.publicKey, 'RS256'], ['p384.pem', p384.publicKey, 'ES384'], ['sec1.pem', sec1.publicKey, 'ES256']] as const) {
    const form = new URLSearchParams()
    await createClientAuth('c', { auth_method: 'private_key_jwt', client_id: 'fleet', private_key_file: join(dir, file) }, TOKEN_URL).apply(form, {})
    t.equal(form.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
    t.equal(form.get('client_id'), 'fleet')
    const assertion = form.get('client_assertion')!
    t.equal(decodeProtectedHeader(assertion).alg, alg, file)
    const { payload } = await jwtVerify(assertion, pub, { issuer: 'fleet', subject: 'fleet', audience: TOKEN_URL })
    t.equal(payload.exp! - payload.iat!, 60)
    t.type(payload.jti, 'string')
  }
})

t.test('an unusable key file fails the fetch without quoting the file', async (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const dir = t.testdir({
    garbage: 'key-canary-not-a-key',
    'public.pem': publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    'mismatch.json': JSON.stringify({ ...generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'jwk' }), alg: 'RS256' }),
  })
  for (const [file, why] of [['garbage', /does not hold a private key/], ['public.pem', /does not hold a private key/], ['mismatch.json', /names alg RS256/], ['missing', /ENOENT/]] as const) {
    const auth = createClientAuth('c', { auth_method: 'private_key_jwt', client_id: 'fleet', private_key_file: join(dir, file) }, TOKEN_URL)
    const err = await issuerFailure(auth.apply(new URLSearchParams(), {}))
    t.equal(err.code, 'SIDEKEY_ISSUER_FAILED', file)
    t.match(err.message, why, file)
    t.notMatch(everythingSaidBy(err), 'key-canary')
  }
})

t.test('a rotated key file is re-imported', async (t) => {
  const one = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const two = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const dir = t.testdir({ key: one.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() })
  const auth = createClientAuth('c', { auth_method: 'private_key_jwt', client_id: 'fleet', private_key_file: join(dir, 'key') }, TOKEN_URL)
  const first = new URLSearchParams()
  await auth.apply(first, {})
  await jwtVerify(first.get('client_assertion')!, one.publicKey)
  await writeFile(join(dir, 'key'), two.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
  const second = new URLSearchParams()
  await auth.apply(second, {})
  await jwtVerify(second.get('client_assertion')!, two.publicKey)
  t.pass('each assertion verified with the key on disk at the time')
})

t.test('token exchange with auth none and no client_id sends no client credentials', async (t) => {
  const server = await startWireServer((_req, res) => reply(res, 200, { access_token: 'exchanged', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'N_A', expires_in: 30 }))
  t.teardown(() => server.close())
  const dir = t.testdir({ subject: 'sub-token' })
  const issuer = createTokenExchangeIssuer('sts', {
    type: 'oauth2_token_exchange',
    dpop: false,
    token_url: server.url,
    auth_method: 'none',
    subject_token_file: join(dir, 'subject'),
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    audience_param: 'resource',
    timeout: 10_000,
    params: {},
  }, issuerDeps(t))
  const cred = await issuer.fetch(credentialRequest({ audience: 'https://x.test', scopes: ['s1'] }))
  t.equal(cred.token.reveal(), 'exchanged')
  const seen = server.requests[0]!
  t.equal(seen.headers.authorization, undefined)
  t.same(Object.fromEntries(new URLSearchParams(seen.body)), {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: 'sub-token',
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    scope: 's1',
    resource: 'https://x.test',
  })
})
