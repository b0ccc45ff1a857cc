import t from 'tap'
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { createTokenExchangeIssuer } from '../../../src/credentials/issuers/oauth2-token-exchange.js'
import type { TokenExchangeIssuerConfig } from '../../../src/config/schema.js'
import { startOidcServer, type OidcServer } from '../../fixtures/issuers/oidc-server.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'

const AUDIENCE = 'https://crm.tool.test'
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

let as: OidcServer
t.before(async () => { as = await startOidcServer() })
t.teardown(() => as.close())

const config = (over: Partial<TokenExchangeIssuerConfig>): TokenExchangeIssuerConfig => ({
  type: 'oauth2_token_exchange',
  dpop: false,
  token_url: as.tokenUrl,
  client_id: 'exchange-client',
  client_secret: as.secrets['exchange-client'],
  auth_method: 'client_secret_basic',
  subject_token_file: '/nonexistent',
  subject_token_type: JWT_TYPE,
  actor_token_type: JWT_TYPE,
  requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  audience_param: 'audience',
  timeout: 10_000,
  params: {},
  ...over,
})

t.test('exchanges the subject token for a token scoped to the tool', async (t) => {
  const dir = t.testdir({ 'sa-token': 'subject-one\n' })
  as.acceptSubject = new Set(['subject-one'])
  const issuer = createTokenExchangeIssuer('sts', config({ subject_token_file: join(dir, 'sa-token') }), issuerDeps(t))
  const cred = await issuer.fetch(credentialRequest({ tool: 'crm', scopes: ['crm.read', 'crm.write'], audience: AUDIENCE }))
  const call = as.exchanges.at(-1)!
  t.match(call, {
    clientId: 'exchange-client',
    subjectToken: 'subject-one',
    subjectTokenType: JWT_TYPE,
    actorToken: undefined,
    audience: AUDIENCE,
    resource: undefined,
    scope: 'crm.read crm.write',
    requestedTokenType: 'urn:ietf:params:oauth:token-type:access_token',
  })
  const { payload } = await jwtVerify(cred.token.reveal(), createRemoteJWKSet(new URL(as.jwksUrl)), { issuer: as.issuer, audience: AUDIENCE })
  t.equal(payload.scope, 'crm.read crm.write')
  t.equal(cred.id, payload.jti)
  t.equal(cred.expiresAt! - cred.issuedAt, 300_000)
})

t.test('the subject token is re-read after the kubelet rotates it (in place and by rename)', async (t) => {
  const dir = t.testdir({ 'sa-token': 'subject-old' })
  const file = join(dir, 'sa-token')
  as.acceptSubject = new Set(['subject-old', 'subject-new', 'subject-newest'])
  const issuer = createTokenExchangeIssuer('sts', config({ subject_token_file: file }), issuerDeps(t))
  await issuer.fetch(credentialRequest({ audience: AUDIENCE }))
  t.equal(as.exchanges.at(-1)!.subjectToken, 'subject-old')

  await writeFile(file, 'subject-new')
  await issuer.fetch(credentialRequest({ audience: AUDIENCE }))
  t.equal(as.exchanges.at(-1)!.subjectToken, 'subject-new')

  await writeFile(join(dir, '.tmp'), 'subject-newest\n')
  await rename(join(dir, '.tmp'), file)
  await issuer.fetch(credentialRequest({ audience: AUDIENCE }))
  t.equal(as.exchanges.at(-1)!.subjectToken, 'subject-newest')
})

t.test('actor token, and audience_param both sends audience and resource', async (t) => {
  const dir = t.testdir({ subject: 'subject-a', actor: 'actor-token-a\n' })
  as.acceptSubject = new Set(['subject-a'])
  const issuer = createTokenExchangeIssuer('sts', config({
    subject_token_file: join(dir, 'subject'),
    actor_token_file: join(dir, 'actor'),
    audience_param: 'both',
  }), issuerDeps(t))
  await issuer.fetch(credentialRequest({ audience: AUDIENCE }))
  t.match(as.exchanges.at(-1), { actorToken: 'actor-token-a', audience: AUDIENCE, resource: AUDIENCE, scope: undefined })
})

t.test('a refused subject token is invalid_grant, and the token is not in the error', async (t) => {
  const dir = t.testdir({ 'sa-token': 'subject-canary-refused' })
  as.acceptSubject = new Set()
  const issuer = createTokenExchangeIssuer('sts', config({ subject_token_file: join(dir, 'sa-token') }), issuerDeps(t))
  const err = await issuerFailure(issuer.fetch(credentialRequest({ audience: AUDIENCE })))
  t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
  t.match(err.message, /HTTP 400 \(error invalid_grant\)/)
  const said = everythingSaidBy(err)
  t.notMatch(said, 'subject-canary-refused')
  t.notMatch(said, as.secrets['exchange-client']!)
})

t.test('a missing or empty subject token file fails before any request', async (t) => {
  const dir = t.testdir({ empty: '\n' })
  const before = as.exchanges.length
  for (const [file, why] of [[join(dir, 'missing'), /ENOENT/], [join(dir, 'empty'), /is empty/]] as const) {
    const issuer = createTokenExchangeIssuer('sts', config({ subject_token_file: file }), issuerDeps(t))
    const err = await issuerFailure(issuer.fetch(credentialRequest({ audience: AUDIENCE })))
    t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
    t.match(err.message, why)
    t.match(err.message, 'subject_token_file')
  }
  t.equal(as.exchanges.length, before, 'the authorization server was not called')
})
