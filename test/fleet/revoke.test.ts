import t from 'tap'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request, ProxyAgent } from 'undici'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { startUpstream } from '../helpers/upstream.js'
import { cli } from '../helpers/cli.js'
import { startSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { testBucket } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'
import { startOidcServer } from '../fixtures/issuers/oidc-server.js'
import { fleetJwks } from '../../src/fleet/operator.js'

/**
 * Revocation through the fleet, with the real CLI (dist/cli.js, built by `npm test`): an oauth2 token is revoked
 * at oidc-provider (RFC 7009) while the agent keeps calling, and an instance's local_jwt keys leave the fleet JWKS.
 */
const nats = await natsBinary

t.test('fleet revoke against oidc-provider, and the fleet JWKS', { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const kv = await testBucket(t, broker.url)
  const oidc = await startOidcServer()
  t.teardown(() => oidc.close())
  const basic = 'Basic ' + Buffer.from(`basic-client:${encodeURIComponent(oidc.secrets['basic-client']).replace(/%20/g, '+')}`).toString('base64')
  const introspect = async (token: string): Promise<{ active: boolean }> => {
    const res = await request(oidc.introspectionUrl, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() })
    return await res.body.json() as { active: boolean }
  }
  // The upstream accepts a token only while oidc-provider says it is active: a revoked token in use would fail a call.
  const up = await startUpstream({
    handler: (req, res) => {
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
      const answer = (status: number): void => { res.writeHead(status, { 'content-type': 'application/json' }).end('{}') }
      if (req.headers.host?.startsWith('internal.test') === true) return answer(200)
      introspect(token).then((r) => answer(r.active ? 200 : 401), () => answer(500))
    },
  })
  t.teardown(() => up.close())

  const dir = t.testdir({})
  const keygen = await cli(['fleet', 'keygen', '--out', join(dir, 'ops')])
  t.equal(keygen.code, 0, keygen.stderr)
  const pem = join(dir, 'ops', 'operator.pem')
  t.equal(statSync(pem).mode & 0o777, 0o600, 'the private key is mode 0600')
  t.match(JSON.parse(keygen.stdout), { keys: [{ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: String }] })
  const jwksFile = join(dir, 'ops', 'operators.jwks')

  const yaml = (id: string): string => `
instance_id: ${id}
ca: { dir: {{CA_DIR}} }
resolve: { repo.test: 127.0.0.1, internal.test: 127.0.0.1 }
issuers:
  idp: { type: oauth2_client_credentials, token_url: ${oidc.tokenUrl}, revocation_url: ${oidc.revocationUrl}, client_id: basic-client, client_secret: "${oidc.secrets['basic-client']}" }
  local: { type: local_jwt }
tools:
  repo: { match: { host: repo.test, port: ${up.port} }, issuer: idp, scopes: [repo:read], plaintext: true }
  internal: { match: { host: internal.test, port: ${up.port} }, issuer: local, audience: https://internal.test, plaintext: true }
fleet:
  nats: { servers: [${broker.url}] }
  operator_keys: ${jwksFile}
  heartbeat: 1s
`
  const a = await startSidekey(t, yaml('agent-a'))
  const b = await startSidekey(t, yaml('agent-b'))
  await Promise.all([a.app.fleet!.synced(), b.app.fleet!.synced()])
  await until(async () => (await fleetJwks(kv)).keys.length >= 2, 'both instances published their keys')
  const configFile = join(dir, 'cli.yaml')
  writeFileSync(configFile, yaml('operator').replace('{{CA_DIR}}', join(dir, 'ca')))
  const agentA = new ProxyAgent({ uri: a.proxyUrl, proxyTunnel: false })
  t.teardown(() => agentA.close())
  const callA = async (host: string): Promise<number> => {
    const res = await request(`http://${host}:${up.port}/x`, { dispatcher: agentA })
    await res.body.dump()
    return res.statusCode
  }

  t.test('revoke an oauth2 tool: the old token is inactive at the issuer, a new one is in use, no call failed', async (t) => {
    t.equal(await callA('repo.test'), 200)
    const old = up.seen.at(-1)!.headers.authorization!.replace(/^Bearer /, '')
    t.equal((await introspect(old)).active, true)
    let failed = 0
    let calls = 0
    let running = true
    const traffic = (async () => {
      while (running) {
        const s = await callA('repo.test').catch(() => 0)
        calls++
        if (s !== 200) failed++
      }
    })()
    const r = await cli(['fleet', 'revoke', '--config', configFile, '--key', pem, '--tool', 'repo', '--instance', 'agent-a', '--reason', 'token leaked in a CI log', '--actor', 'oncall'])
    running = false
    await traffic
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /agent-a +applied/)
    t.match(r.stdout, /1\/1 instances applied in \d+ ms/)
    t.equal(failed, 0, `no failed call out of ${calls} during the revoke`)
    t.equal((await introspect(old)).active, false, 'oidc-provider: the old token is revoked')
    t.equal(await callA('repo.test'), 200)
    const fresh = up.seen.at(-1)!.headers.authorization!.replace(/^Bearer /, '')
    t.not(fresh, old, 'a new token is in use')
    t.equal((await introspect(fresh)).active, true)
    t.match(a.log.events('credential.revoked'), [{ tool: 'repo', reason: 'fleet' }])
    t.match(a.log.events('fleet.command').at(-1), { action: 'revoke', tool: 'repo', instance: 'agent-a', actor: 'oncall', reason: 'token leaked in a CI log', result: 'applied' })
    t.same(b.log.events('credential.revoked'), [], 'agent-b was not named')
    t.notOk(r.stdout.includes(old) || a.log.text.includes(old), 'the token is in no output')
  })

  t.test('fleet JWKS: a token from agent-a verifies against the union until agent-a is revoked', async (t) => {
    t.equal(await callA('internal.test'), 200)
    const token = up.seen.at(-1)!.headers.authorization!.replace(/^Bearer /, '')
    const printed = await cli(['fleet', 'jwks', '--config', configFile])
    t.equal(printed.code, 0, printed.stderr)
    const union = JSON.parse(printed.stdout) as { keys: Array<{ kid: string }> }
    t.equal(union.keys.length, 2, 'one key per instance')
    await jwtVerify(token, createLocalJWKSet(union as never), { audience: 'https://internal.test' })
    t.pass('verifies against the union')
    const started = performance.now()
    const r = await cli(['fleet', 'revoke', '--config', configFile, '--key', pem, '--tool', '*', '--instance', 'agent-a', '--reason', 'pod compromised'])
    t.equal(r.code, 0, r.stderr)
    await until(async () => {
      try {
        await jwtVerify(token, createLocalJWKSet(await fleetJwks(kv) as never))
        return false
      } catch { return true }
    }, 'the token stops verifying')
    t.comment(`fleet JWKS: agent-a's old token stopped verifying ${Math.round(performance.now() - started)} ms after the CLI started (CLI start-up included)`)
    t.equal(await callA('internal.test'), 200, 'agent-a carries on with a token signed by its new key')
    const newer = up.seen.at(-1)!.headers.authorization!.replace(/^Bearer /, '')
    await jwtVerify(newer, createLocalJWKSet(await fleetJwks(kv) as never))
    t.pass('the new token verifies against the union')
  })

  t.test('status, lock with a missing instance, and bad usage', async (t) => {
    const s = await cli(['fleet', 'status', '--config', configFile])
    t.equal(s.code, 0, s.stderr)
    t.match(s.stdout, /instances \(2 live of 2 seen\)/)
    t.match(s.stdout, /revoke repo on agent-a by oncall: token leaked in a CI log {2}acks 1 applied, 0 not/)
    const ghost = await cli(['fleet', 'lock', '--config', configFile, '--key', pem, '--tool', 'repo', '--instance', 'ghost', '--reason', 'x', '--wait', '1s'])
    t.equal(ghost.code, 1)
    t.match(ghost.stderr, /no live instance named ghost/)
    const bad = await cli(['fleet', 'lock', '--config', configFile])
    t.equal(bad.code, 2)
    t.match(bad.stderr, /lock needs --key, --tool, --reason/)
    t.equal((await cli(['fleet', 'frobnicate'])).code, 2)
    t.equal((await cli(['fleet', '--help'])).code, 0)
  })
})
