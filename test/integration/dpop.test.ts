import t from 'tap'
import { createHash, randomUUID } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { request, ProxyAgent } from 'undici'
import { calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, EmbeddedJWK, jwtVerify, type JWK } from 'jose'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { startOidcServer } from '../fixtures/issuers/oidc-server.js'

const run = promisify(execFile)
const as = await startOidcServer({ dpopNonce: true })
t.teardown(() => as.close())
const jwks = createRemoteJWKSet(new URL(as.jwksUrl))
const pki = await upstreamPki()

/**
 * The tool: a resource server that checks every call as RFC 9449 §4.3 and §7 say — one DPoP proof, typ dpop+jwt,
 * ES256 over its embedded public key, htm and htu of this request, iat within 60 s, jti never seen before, its
 * nonce, ath = hash of the access token, and the token (verified against the issuer's JWKS) bound to that key by
 * cnf.jkt. It rotates its nonce on the first call, so the proxy has to answer a use_dpop_nonce challenge.
 */
const seenJti = new Set<string>()
let nonce = randomUUID()
const verdicts: Array<{ ok: boolean, reason: string }> = []
let lastAccepted: { authorization: string, dpop: string, path: string } | undefined
const verify = async (req: IncomingMessage, port: number): Promise<string | undefined> => {
  const auth = req.headers.authorization ?? ''
  if (!auth.startsWith('DPoP ')) return 'not the DPoP scheme'
  const token = auth.slice(5)
  const proofs = req.headersDistinct.dpop ?? []
  if (proofs.length !== 1) return 'missing proof'
  const proof = proofs[0]!
  let claims: Record<string, unknown>
  try {
    ({ payload: claims } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] }))
  } catch {
    return 'bad proof signature'
  }
  const htu = `https://dpop.tool.test:${port}${(req.url ?? '').split('?')[0]!}`
  if (claims.htm !== req.method) return 'wrong htm'
  if (claims.htu !== htu) return 'wrong htu'
  if (typeof claims.iat !== 'number' || Math.abs(Date.now() / 1000 - claims.iat) > 60) return 'iat out of window'
  if (typeof claims.jti !== 'string' || seenJti.has(claims.jti)) return 'replayed jti'
  seenJti.add(claims.jti)
  if (claims.ath !== createHash('sha256').update(token).digest('base64url')) return 'wrong ath'
  const { payload: at } = await jwtVerify(token, jwks, { issuer: as.issuer })
  const jkt = await calculateJwkThumbprint(decodeProtectedHeader(proof).jwk as JWK)
  if ((at.cnf as { jkt?: string } | undefined)?.jkt !== jkt) return 'token not bound to the proof key'
  if (claims.nonce !== nonce) return 'use_dpop_nonce'
  lastAccepted = { authorization: auth, dpop: proof, path: req.url ?? '' }
  return undefined
}
const tls = await pki.cert('dpop.tool.test')
let toolPort = 0
const tool = await startUpstream({
  tls,
  handler: (req: IncomingMessage, res: ServerResponse) => {
    void verify(req, toolPort).then((reason) => {
      verdicts.push({ ok: reason === undefined, reason: reason ?? 'ok' })
      if (reason === 'use_dpop_nonce') {
        res.writeHead(401, { 'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"', 'dpop-nonce': nonce })
        res.end()
      } else if (reason !== undefined) {
        res.writeHead(401, { 'www-authenticate': `DPoP error="invalid_dpop_proof", error_description="${reason}"` })
        res.end()
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.end('verified')
      }
    })
  },
})
toolPort = tool.port
t.teardown(() => tool.close())

const sk = await startSidekey(t, `
instance_id: dpop-1
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { dpop.tool.test: 127.0.0.1 }
issuers:
  idp: { type: oauth2_client_credentials, token_url: ${as.tokenUrl}, client_id: basic-client, client_secret: ${JSON.stringify(as.secrets['basic-client'])}, dpop: true }
tools:
  dpop:
    match: { host: dpop.tool.test, port: ${tool.port} }
    issuer: idp
    scopes: [repo:read]
    audience: https://dpop.tool.test
    placeholder: sidekey
`)

t.test('absolute-form: a bound token (token_type DPoP, cnf.jkt) and a fresh proof per call; the tool\'s nonce challenge is answered once', async (t) => {
  const agent = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => agent.close())
  const before = verdicts.length
  for (let i = 0; i < 3; i++) {
    const res = await request(`http://dpop.tool.test:${tool.port}/v1/items/${i}?q=x#frag`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
    t.equal(res.statusCode, 200)
    t.equal(await res.body.text(), 'verified')
  }
  t.same(verdicts.slice(before).map((v) => v.reason), ['use_dpop_nonce', 'ok', 'ok', 'ok'], 'one nonce challenge, then every proof verifies')
  const issued = sk.log.events('credential.issued').at(-1)
  t.ok(issued, 'the issuer answered with a bound token (after its own nonce challenge)')
})

t.test('intercepted CONNECT (curl): the same checks pass; a rotated tool nonce is answered again', async (t) => {
  nonce = randomUUID()
  const before = verdicts.length
  const { stdout } = await run('curl', ['-sS', '--proxy', sk.proxyUrl, '--cacert', join(sk.caDir, 'ca.pem'), '-X', 'POST', '-d', 'x',
    '-H', 'Authorization: Bearer sidekey', `https://dpop.tool.test:${tool.port}/v1/things?z=1`])
  t.equal(stdout, 'verified')
  t.same(verdicts.slice(before).map((v) => v.reason), ['use_dpop_nonce', 'ok'])
})

t.test('the tool is a judge: a replayed proof, a wrong htu and a missing proof are refused', async (t) => {
  const last = lastAccepted!
  const direct = (path: string, headers: Record<string, string>): Promise<number> => new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: tool.port, servername: 'dpop.tool.test', path, method: 'POST', headers: { ...headers, host: `dpop.tool.test:${tool.port}` }, ca: readFileSync(pki.caFile, 'utf8') },
      (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end('x')
  })
  const before = verdicts.length
  t.equal(await direct(last.path, { authorization: last.authorization, dpop: last.dpop }), 401)
  t.equal(await direct('/v1/other', { authorization: last.authorization, dpop: last.dpop }), 401)
  t.equal(await direct(last.path, { authorization: last.authorization }), 401)
  t.equal(await direct(last.path, { authorization: last.authorization.replace(/^DPoP/, 'Bearer') }), 401)
  t.same(verdicts.slice(before).map((v) => v.reason), ['replayed jti', 'wrong htu', 'missing proof', 'not the DPoP scheme'])
})

t.test('no access token in the log', async (t) => {
  t.notOk(sk.log.text.includes(lastAccepted!.authorization.slice(5)))
})
