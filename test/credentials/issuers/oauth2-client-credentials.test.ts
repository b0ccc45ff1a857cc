import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { createClientCredentialsIssuer } from '../../../src/credentials/issuers/oauth2-client-credentials.js'
import type { ClientCredentialsIssuerConfig } from '../../../src/config/schema.js'
import { startOidcServer, type OidcServer } from '../../fixtures/issuers/oidc-server.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'

const AUDIENCE = 'https://api.tool.test'

let as: OidcServer
t.before(async () => { as = await startOidcServer() })
t.teardown(() => as.close())

const config = (over: Partial<ClientCredentialsIssuerConfig>): ClientCredentialsIssuerConfig => ({
  type: 'oauth2_client_credentials',
  dpop: false,
  token_url: as.tokenUrl,
  client_id: 'basic-client',
  auth_method: 'client_secret_basic',
  audience_param: 'resource',
  timeout: 10_000,
  params: {},
  ...over,
})

/** Verifies an access token against the provider's published JWKS, as the tool's API would. */
async function verifyAtProvider (token: string) {
  const jwks = createRemoteJWKSet(new URL(as.jwksUrl))
  const { payload } = await jwtVerify(token, jwks, { issuer: as.issuer, audience: AUDIENCE })
  return payload
}

t.test('client_secret_basic: a JWT for the tool audience and scopes, id = jti', async (t) => {
  const issuer = createClientCredentialsIssuer('idp', config({ client_secret: as.secrets['basic-client'] }), issuerDeps(t))
  const before = Date.now()
  const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:read'], audience: AUDIENCE }))
  const claims = await verifyAtProvider(cred.token.reveal())
  t.equal(claims.scope, 'repo:read')
  t.equal(claims.client_id, 'basic-client')
  t.equal(cred.id, claims.jti)
  t.ok(cred.issuedAt >= before && cred.issuedAt <= Date.now())
  // accessTokenTTL 600 s, measured from before the request was sent
  t.ok(cred.expiresAt !== undefined && cred.expiresAt - cred.issuedAt === 600_000)
})

t.test('client_secret_post with the secret in a file that is re-read after rotation', async (t) => {
  const dir = t.testdir({ secret: `${as.secrets['post-client']}\n` })
  const file = join(dir, 'secret')
  const issuer = createClientCredentialsIssuer('idp', config({ client_id: 'post-client', auth_method: 'client_secret_post', client_secret_file: file }), issuerDeps(t))
  const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:read', 'repo:write'], audience: AUDIENCE }))
  t.equal((await verifyAtProvider(cred.token.reveal())).scope, 'repo:read repo:write')

  await writeFile(file, 'rotated-away-secret\n')
  const err = await issuerFailure(issuer.fetch(credentialRequest({ audience: AUDIENCE })))
  t.equal(err.code, 'SIDEKEY_ISSUER_FAILED', 'the new (wrong) secret was used, not a cached one')
  t.match(err.message, /HTTP 401 \(error invalid_client\)/)
  t.notMatch(everythingSaidBy(err), 'rotated-away-secret')

  await writeFile(file, as.secrets['post-client'])
  t.ok((await issuer.fetch(credentialRequest({ audience: AUDIENCE }))).token.reveal().length > 0, 'recovers with the restored secret')
})

t.test('private_key_jwt with a PEM key and with a JWK key', async (t) => {
  const dir = t.testdir({ 'key.pem': as.clientPrivatePem, 'key.json': JSON.stringify(as.clientPrivateJwk) })
  for (const name of ['key.pem', 'key.json']) {
    const issuer = createClientCredentialsIssuer('idp', config({ client_id: 'jwt-client', auth_method: 'private_key_jwt', private_key_file: join(dir, name) }), issuerDeps(t))
    // Two fetches: each assertion has a fresh jti, or the provider's replay detection would refuse the second.
    for (let i = 0; i < 2; i++) {
      const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:write'], audience: AUDIENCE }))
      const claims = await verifyAtProvider(cred.token.reveal())
      t.equal(claims.client_id, 'jwt-client', name)
      t.equal(claims.scope, 'repo:write', name)
    }
  }
})

t.test('a scope the resource server does not know is not granted', async (t) => {
  const issuer = createClientCredentialsIssuer('idp', config({ client_secret: as.secrets['basic-client'] }), issuerDeps(t))
  const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:read', 'admin:all'], audience: AUDIENCE }))
  t.equal((await verifyAtProvider(cred.token.reveal())).scope, 'repo:read')
})

t.test('a wrong client secret: invalid_client, and neither secret is in the error', async (t) => {
  const issuer = createClientCredentialsIssuer('idp', config({ client_secret: 'wrong-secret-canary' }), issuerDeps(t))
  const err = await issuerFailure(issuer.fetch(credentialRequest({ audience: AUDIENCE })))
  t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
  t.match(err.message, new URL(as.tokenUrl).host)
  t.match(err.message, 'invalid_client')
  const said = everythingSaidBy(err)
  t.notMatch(said, 'wrong-secret-canary')
  t.notMatch(said, as.secrets['basic-client']!)
  t.equal(err.retryAfterMs, undefined)
})

t.test('a private key the client is not registered with is refused', async (t) => {
  const { generateKeyPair, exportJWK } = await import('jose')
  const other = await generateKeyPair('ES256', { extractable: true })
  const dir = t.testdir({ 'other.json': JSON.stringify(await exportJWK(other.privateKey)) })
  const issuer = createClientCredentialsIssuer('idp', config({ client_id: 'jwt-client', auth_method: 'private_key_jwt', private_key_file: join(dir, 'other.json') }), issuerDeps(t))
  const err = await issuerFailure(issuer.fetch(credentialRequest({ audience: AUDIENCE })))
  t.match(err.message, 'invalid_client')
})
