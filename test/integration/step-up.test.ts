import t from 'tap'
import { decodeJwt } from 'jose'
import { ProxyAgent, request } from 'undici'
import { startOidcServer } from '../fixtures/issuers/oidc-server.js'
import { json, startResourceServer } from '../fixtures/issuers/resource-server.js'
import { reply } from '../fixtures/issuers/wire-server.js'
import { startSidekey } from '../helpers/sidekey.js'
import { auditLine } from '../protocols/helpers.js'

/**
 * A remote MCP server that wants more scope than the tool's token has answers 403 insufficient_scope (RFC 6750
 * §3.1). Through the running proxy: sidekey asks its issuer once for the named scope where `step_up_scopes` allows
 * it and replays the call; elsewhere the 403 reaches the agent as it was, audited. The agent never runs OAuth.
 */
const as = await startOidcServer()
t.teardown(() => as.close())
const rs = await startResourceServer()
t.teardown(() => rs.close())
const port = Number(new URL(rs.origin).port)
const resource = `${rs.origin}/mcp`
rs.routes.set('/.well-known/oauth-protected-resource/mcp', json({ resource, authorization_servers: [as.issuer] }))
/** Scopes of each token the MCP endpoint was called with. */
const scopesSeen: string[] = []
rs.routes.set('/mcp', (req, res) => {
  const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
  const scope = String(decodeJwt(token).scope ?? '')
  scopesSeen.push(scope)
  if (scope.split(' ').includes('repo:write')) reply(res, 200, { ok: true })
  else reply(res, 403, { error: 'insufficient_scope' }, { 'www-authenticate': 'Bearer error="insufficient_scope", scope="repo:write"' })
})

const issuer = (name: string, extra: string): string =>
  `  ${name}: { type: oauth2_client_credentials, resource: "${resource}", client_id: basic-client, ` +
  `client_secret: "${as.secrets['basic-client']}"${extra} }\n`
const sk = await startSidekey(t, `
instance_id: agent-step
ca: { dir: {{CA_DIR}} }
resolve: { mcp.step.test: 127.0.0.1, strict.step.test: 127.0.0.1 }
issuers:
${issuer('stepping', ', step_up_scopes: [repo:write]')}${issuer('fixed', '')}
tools:
  stepping: { match: { host: mcp.step.test, port: ${port} }, issuer: stepping, scopes: [repo:read], plaintext: true }
  fixed: { match: { host: strict.step.test, port: ${port} }, issuer: fixed, scopes: [repo:read], plaintext: true }
`)
const agent = new ProxyAgent(sk.proxyUrl)
t.teardown(() => agent.close())

t.test('a scope the issuer may grant: asked once, the call replayed with it, the agent gets the answer', async (t) => {
  scopesSeen.length = 0
  const res = await request(`http://mcp.step.test:${port}/mcp`, {
    method: 'POST', dispatcher: agent, headers: { authorization: 'Bearer sidekey', 'content-type': 'application/json' }, body: '{}',
  })
  t.equal(res.statusCode, 200)
  t.same(await res.body.json(), { ok: true })
  t.same(scopesSeen, ['repo:read', 'repo:read repo:write'], 'the tool\'s own token, then the stepped-up one')
  const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.tool === 'stepping')
  t.match(used, { status: 200, replayed: true })
  const issued = sk.log.events('credential.issued').filter((e) => e.reason === 'step_up')
  t.equal(issued.length, 1, 'the stepped-up credential is audited as issued')
})

t.test('a scope the config does not allow: the 403 goes to the agent as it was, once, audited', async (t) => {
  scopesSeen.length = 0
  const res = await request(`http://strict.step.test:${port}/mcp`, {
    method: 'POST', dispatcher: agent, headers: { authorization: 'Bearer sidekey', 'content-type': 'application/json' }, body: '{}',
  })
  t.equal(res.statusCode, 403)
  t.match(String(res.headers['www-authenticate']), /insufficient_scope/)
  await res.body.dump()
  t.same(scopesSeen, ['repo:read'], 'no second call, no wider token')
  const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.tool === 'fixed')
  t.match(used, { status: 403 })
  t.notOk(used?.replayed)
})
