import t, { type Test } from 'tap'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { createClientCredentialsIssuer } from '../../../src/credentials/issuers/oauth2-client-credentials.js'
import { createIssuer } from '../../../src/credentials/issuers/index.js'
import {
  authorizationServerMetadataUrls, checkDiscoveredUrl, protectedResourceMetadataUrls,
} from '../../../src/credentials/issuers/discovery.js'
import type { ClientCredentialsIssuerConfig } from '../../../src/config/schema.js'
import { parseConfig } from '../../../src/config/load.js'
import { describeDiscovery } from '../../../src/credentials/issuers/discovery-check.js'
import { REDISCOVER_AFTER_MS } from '../../../src/credentials/issuers/oauth-endpoint.js'
import { FakeClock } from '../fake-clock.js'
import { IssuerError } from '../../../src/errors.js'
import { systemClock } from '../../../src/util/clock.js'
import { startOidcServer, type OidcServer } from '../../fixtures/issuers/oidc-server.js'
import { forwardTo, json, startResourceServer, type ResourceServer } from '../../fixtures/issuers/resource-server.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'
import { reply } from '../../fixtures/issuers/wire-server.js'
import { harness, makeConfig } from '../fakes.js'
import { rejectionOf } from '../../config/helpers.js'

const PRM_PATH = '/.well-known/oauth-protected-resource/mcp'
const ASM_PATH = '/.well-known/oauth-authorization-server'

let as: OidcServer
t.before(async () => { as = await startOidcServer() })
t.teardown(() => as.close())

async function resourceServer (t: Test): Promise<ResourceServer> {
  const rs = await startResourceServer()
  t.teardown(() => rs.close())
  return rs
}

type IssuerConfig = ClientCredentialsIssuerConfig
const config = (resource: string, over: Partial<IssuerConfig> = {}): IssuerConfig => ({
  type: 'oauth2_client_credentials',
  dpop: false,
  resource,
  client_id: 'basic-client',
  client_secret: as.secrets['basic-client'],
  auth_method: 'client_secret_basic',
  audience_param: 'resource',
  timeout: 10_000,
  params: {},
  ...over,
})

/** A resource that is its own authorization server, whose token endpoint at `tokenPath` forwards to the real one. */
async function ownAuthorizationServer (t: Test, tokenPath: string, extra: Record<string, string> | false = {}) {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set(PRM_PATH, json({ resource, authorization_servers: [rs.origin] }))
  // Paths in `extra` (other endpoints) are on the same server.
  const paths = Object.entries(extra === false ? {} : extra)
  const endpoints = Object.fromEntries(paths.map(([k, v]) => [k, `${rs.origin}${v}`]))
  rs.routes.set(ASM_PATH, json({ issuer: rs.origin, token_endpoint: `${rs.origin}${tokenPath}`, ...endpoints }))
  if (extra !== false) rs.routes.set(tokenPath, forwardTo(as.tokenUrl))
  return { rs, resource }
}

/** The access token as the MCP server would check it: signed by the authorization server, for this resource. */
async function verifyFor (token: string, resource: string) {
  const jwks = createRemoteJWKSet(new URL(as.jwksUrl))
  const { payload } = await jwtVerify(token, jwks, { issuer: as.issuer, audience: resource })
  return payload
}

t.test('the token endpoint is found from the resource\'s metadata, and the token is for the resource', async (t) => {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set(PRM_PATH, json({ resource, authorization_servers: [as.issuer], scopes_supported: ['repo:read'] }))
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))

  // The tool's own audience does not displace the resource: the MCP server checks its own URI.
  const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:read'], audience: 'https://elsewhere.test' }))
  const claims = await verifyFor(cred.token.reveal(), resource)
  t.equal(claims.aud, resource)
  t.equal(claims.scope, 'repo:read')
  t.equal(claims.client_id, 'basic-client')
  t.same(rs.paths(), [PRM_PATH], 'the RFC 9728 path-aware document was read first, and was enough')

  await issuer.fetch(credentialRequest({ scopes: ['repo:read'] }))
  t.same(rs.paths(), [PRM_PATH], 'a second token request uses what was discovered')
})

t.test('a resource without a path-aware document falls back to the root one', async (t) => {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set('/.well-known/oauth-protected-resource', json({ resource, authorization_servers: [as.issuer] }))
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))
  const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:read'] }))
  t.equal((await verifyFor(cred.token.reveal(), resource)).aud, resource)
  t.same(rs.paths(), [PRM_PATH, '/.well-known/oauth-protected-resource'])
})

/** A manager holding one tool of a discovered issuer, on the real issuer code, with its audit recorded. */
async function managerFor (t: Test, resource: string, over: Partial<ClientCredentialsIssuerConfig> = {}) {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ mcp: { issuer: 'mcp', scopes: ['repo:read'] } }, { mcp: config(resource, over) }),
    { clock: systemClock, createIssuer })
  await m.start()
  return { m, sink: h.sink }
}

t.test('metadata naming another resource is refused: no credential, failure audited, no token request', async (t) => {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set(PRM_PATH, json({ resource: `${rs.origin}/other`, authorization_servers: [rs.origin] }))
  rs.routes.set(ASM_PATH, json({ issuer: rs.origin, token_endpoint: `${rs.origin}/token` }))
  rs.routes.set('/token', forwardTo(as.tokenUrl))
  const { m, sink } = await managerFor(t, resource)
  t.equal(m.current('mcp'), undefined, 'fails closed')
  t.same(m.unready(), ['mcp'])
  const failed = sink.of('credential.refresh_failed')
  t.equal(failed.length, 1)
  t.match(failed[0]?.error,
    /^SIDEKEY_ISSUER_RESPONSE: discovery for resource .*\/mcp: .* names resource ".*\/other", not the configured one/)
  t.notMatch(failed[0]?.error, as.secrets['basic-client']!)
  t.same(rs.paths(), [PRM_PATH], 'neither the authorization server nor any token endpoint was asked')
})

t.test('step-up: a 403 insufficient_scope for an allowed scope gets a token the server grants it for', async (t) => {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set(PRM_PATH, json({ resource, authorization_servers: [as.issuer] }))
  const { m } = await managerFor(t, resource, { step_up_scopes: ['repo:write'] })
  const own = m.current('mcp')
  t.equal((await verifyFor(own!.token.reveal(), resource)).scope, 'repo:read')
  // What the MCP server said: WWW-Authenticate: Bearer error="insufficient_scope", scope="repo:write"
  const stepped = await m.stepUp('mcp', 'repo:write')
  const claims = await verifyFor(stepped!.token.reveal(), resource)
  t.equal(claims.scope, 'repo:read repo:write')
  t.equal(claims.aud, resource)
  t.equal(m.current('mcp')?.id, own?.id)
})

t.test('authorization server metadata naming another issuer is refused (RFC 8414 §3.3)', async (t) => {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set(PRM_PATH, json({ resource, authorization_servers: [rs.origin] }))
  // A document copied from the real server: right endpoints, but not this server's issuer.
  rs.routes.set(ASM_PATH, json({ issuer: as.issuer, token_endpoint: `${rs.origin}/token` }))
  rs.routes.set('/token', forwardTo(as.tokenUrl))
  const { m, sink } = await managerFor(t, resource)
  t.equal(m.current('mcp'), undefined)
  t.match(sink.of('credential.refresh_failed')[0]?.error,
    `names issuer ${JSON.stringify(as.issuer)}, not ${rs.origin} where it was fetched`)
  t.notOk(rs.paths().includes('/token'), 'no client secret was sent anywhere')
})

t.test('a token endpoint that moved is discovered again and the request retried once', async (t) => {
  const { rs, resource } = await ownAuthorizationServer(t, '/old/token')
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))
  const first = await issuer.fetch(credentialRequest({ scopes: ['repo:read'] }))
  t.equal((await verifyFor(first.token.reveal(), resource)).aud, resource)
  t.same(rs.paths(), [PRM_PATH, ASM_PATH, '/old/token'])

  // The authorization server moves its token endpoint: the old one answers 404, the metadata names the new one.
  rs.routes.delete('/old/token')
  rs.routes.set(ASM_PATH, json({ issuer: rs.origin, token_endpoint: as.tokenUrl }))
  const second = await issuer.fetch(credentialRequest({ scopes: ['repo:read'] }))
  t.equal((await verifyFor(second.token.reveal(), resource)).aud, resource)
  t.same(rs.paths().slice(3), ['/old/token', PRM_PATH, ASM_PATH], 'one failed attempt, discovery, the new endpoint')
})

t.test('rediscovery keeps the authorization server it first used', async (t) => {
  const { rs, resource } = await ownAuthorizationServer(t, '/old/token')
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))
  await issuer.fetch(credentialRequest())
  // The resource now names another authorization server: the client secret must not follow it there.
  rs.routes.delete('/old/token')
  rs.routes.set(PRM_PATH, json({ resource, authorization_servers: [as.issuer] }))
  const err = await issuerFailure(issuer.fetch(credentialRequest()))
  t.equal(err.code, 'SIDEKEY_ISSUER_RESPONSE')
  t.match(err.message, `no longer names authorization server ${rs.origin}`)
})

t.test('redirects are not followed and oversized metadata is refused', async (t) => {
  const rs = await resourceServer(t)
  const elsewhere = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  const redirect = (_req: unknown, res: import('node:http').ServerResponse): void => {
    res.writeHead(302, { location: `${elsewhere.origin}/.well-known/oauth-protected-resource` }).end()
  }
  rs.routes.set(PRM_PATH, redirect)
  rs.routes.set('/.well-known/oauth-protected-resource', redirect)
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))
  const err = await issuerFailure(issuer.fetch(credentialRequest()))
  t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
  t.match(err.message, /no protected resource metadata \(.* answered HTTP 302\)/)
  t.same(elsewhere.paths(), [], 'the redirect target was never asked')

  const big = { resource, authorization_servers: [as.issuer], pad: 'x'.repeat(70_000) }
  rs.routes.set(PRM_PATH, (_req, res) => reply(res, 200, big))
  const tooBig = await issuerFailure(issuer.fetch(credentialRequest()))
  t.match(tooBig.message, 'answered with more than 65536 bytes')
})

t.test('revocation uses the discovered revocation_endpoint, with the same client authentication', async (t) => {
  const { rs, resource } = await ownAuthorizationServer(t, '/token', { revocation_endpoint: '/revoke' })
  rs.routes.set('/revoke', json({}))
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))
  const cred = await issuer.fetch(credentialRequest({ scopes: ['repo:read'] }))
  t.equal(await issuer.revoke?.([cred], new AbortController().signal), 1)
  const revoked = rs.requests.find((r) => r.url === '/revoke')
  const sent = new URLSearchParams(revoked?.body).get('token')
  t.equal(sent, cred.token.reveal(), 'the token went to the discovered endpoint')
  t.equal(revoked?.headers.authorization, rs.requests.find((r) => r.url === '/token')?.headers.authorization)
})

t.test('discovered URLs: https, no private addresses, unless the resource is on this machine', async (t) => {
  const remote = new URL('https://mcp.example.com/mcp')
  const local = new URL('http://127.0.0.1:8080/mcp')
  const check = (url: string, resource: URL): string => {
    try {
      checkDiscoveredUrl(url, resource, 'token_endpoint', 'discovery')
      return 'ok'
    } catch (err) {
      t.ok(err instanceof IssuerError)
      return (err as Error).message
    }
  }
  t.equal(check('https://auth.example.com/oauth/token', remote), 'ok')
  t.match(check('http://auth.example.com/oauth/token', remote), 'is plain http while the resource is https')
  t.match(check('https://169.254.169.254/latest', remote), 'is a link-local address')
  t.match(check('https://10.0.0.7/token', remote), 'is a private address')
  t.match(check('https://127.0.0.1:9/token', remote), 'is a loopback address')
  t.match(check('https://user:pw@auth.example.com/token', remote), 'carries credentials')
  t.match(check('file:///etc/passwd', remote), 'is not http(s)')
  t.equal(check('http://127.0.0.1:9999/token', local), 'ok')
  t.match(check('http://10.0.0.7/token', local), 'plain http to neither a loopback address nor the resource')
  t.notMatch(check(`https://${'a'.repeat(200)}.test/`, remote), 'a'.repeat(150), 'long values are not echoed')
})

t.test('well-known URLs: RFC 9728 §3.1 and RFC 8414 §3.1, with the OpenID forms after', async (t) => {
  t.same(protectedResourceMetadataUrls(new URL('https://mcp.example.com/public/mcp')), [
    'https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp',
    'https://mcp.example.com/.well-known/oauth-protected-resource',
  ])
  t.same(protectedResourceMetadataUrls(new URL('https://mcp.example.com/')),
    ['https://mcp.example.com/.well-known/oauth-protected-resource'])
  t.same(authorizationServerMetadataUrls(new URL('https://auth.example.com/tenant1')), [
    'https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
    'https://auth.example.com/.well-known/openid-configuration/tenant1',
    'https://auth.example.com/tenant1/.well-known/openid-configuration',
  ])
  t.same(authorizationServerMetadataUrls(new URL('https://auth.example.com')), [
    'https://auth.example.com/.well-known/oauth-authorization-server',
    'https://auth.example.com/.well-known/openid-configuration',
  ])
})

t.test('config: exactly one of token_url and resource, at the issuer\'s position', async (t) => {
  const issuer = (lines: string[]): string => ['instance_id: t', 'issuers:', '  mcp:',
    '    type: oauth2_client_credentials', '    client_id: a', '    client_secret_file: /run/secrets/mcp', ...lines,
    'tools: {}'].join('\n')
  const both = await rejectionOf(() => parseConfig(issuer(['    token_url: https://auth.example.com/token',
    '    resource: https://mcp.example.com/mcp']), 'x.yaml', {}))
  t.same(both.lines, ['x.yaml:8:15: issuers.mcp.resource: give token_url or resource (discovered), not both'])
  const neither = await rejectionOf(() => parseConfig(issuer([]), 'x.yaml', {}))
  t.same(neither.lines, ['x.yaml:4:5: issuers.mcp: needs token_url, or resource to discover the token endpoint from'])
  const clear = await rejectionOf(() => parseConfig(issuer(['    resource: http://mcp.example.com/mcp']), 'x.yaml', {}))
  t.match(clear.lines, [/^x\.yaml:7:15: issuers\.mcp\.resource: plain http:\/\/ to "mcp\.example\.com" would send/])
  const lines = ['    resource: https://mcp.example.com/mcp', '    step_up_scopes: [repo:write]']
  const ok = parseConfig(issuer(lines), 'x.yaml', {})
  t.match(ok.issuers.mcp, { resource: 'https://mcp.example.com/mcp', step_up_scopes: ['repo:write'] })
})

t.test('no secret in a discovery error', async (t) => {
  const { resource } = await ownAuthorizationServer(t, '/gone', false)
  const issuer = createClientCredentialsIssuer('mcp', config(resource), issuerDeps(t))
  const err = await issuerFailure(issuer.fetch(credentialRequest()))
  t.match(err.message, 'answered HTTP 404')
  t.notMatch(everythingSaidBy(err), as.secrets['basic-client']!)
})

t.test('sidekey check: says discovery happens at run time; with --discover, what it finds or why not', async (t) => {
  const rs = await resourceServer(t)
  const resource = `${rs.origin}/mcp`
  rs.routes.set(PRM_PATH, json({ resource, authorization_servers: [as.issuer] }))
  const yaml = (res: string): string => ['instance_id: t', 'issuers:', '  mcp:', '    type: oauth2_client_credentials',
    `    resource: ${res}`, '    client_id: basic-client',
    `    client_secret: ${JSON.stringify(as.secrets['basic-client'])}`,
    '  local: { type: local_jwt }', 'tools: {}'].join('\n')
  const offline = await describeDiscovery(parseConfig(yaml(resource), 'x.yaml', {}), { network: false })
  t.same(offline, {
    failed: false,
    lines: [`issuer mcp: token endpoint discovered at run time from ${resource} (sidekey check --discover looks now)`],
  })
  t.same(rs.paths(), [], 'nothing was fetched')

  const found = await describeDiscovery(parseConfig(yaml(resource), 'x.yaml', {}), { network: true })
  t.same(found, {
    failed: false,
    lines: [`issuer mcp: resource ${resource} -> authorization server ${as.issuer}, ` +
    `token endpoint ${as.tokenUrl}, revocation endpoint ${as.revocationUrl}`]
  })

  const missing = await describeDiscovery(parseConfig(yaml(`${rs.origin}/nothing`), 'x.yaml', {}), { network: true })
  t.equal(missing.failed, true)
  t.match(missing.lines,
    [/^issuer mcp: discovery failed: SIDEKEY_ISSUER_FAILED: discovery for resource .*\/nothing: no protected resource/])
  t.notMatch(JSON.stringify([found, missing]), as.secrets['basic-client']!)
})

t.test('discovery is done again once it is 24 hours old', async (t) => {
  const { rs, resource } = await ownAuthorizationServer(t, '/token')
  const clock = new FakeClock()
  const issuer = createClientCredentialsIssuer('mcp', config(resource), { ...issuerDeps(t), clock })
  await issuer.fetch(credentialRequest())
  await clock.advance(REDISCOVER_AFTER_MS - 1)
  await issuer.fetch(credentialRequest())
  t.same(rs.paths(), [PRM_PATH, ASM_PATH, '/token', '/token'], 'still fresh')
  await clock.advance(1)
  await issuer.fetch(credentialRequest())
  t.same(rs.paths().slice(4), [PRM_PATH, ASM_PATH, '/token'])
})
