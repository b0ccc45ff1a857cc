import t from 'tap'
import { createHash } from 'node:crypto'
import { decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose'
import { DpopKey, isNonceChallenge } from '../../src/credentials/dpop.js'
import { parseTokenResponse } from '../../src/credentials/issuers/token-endpoint.js'

t.test('a proof: dpop+jwt over the embedded ES256 key, htu without query or fragment, ath of the token, the origin\'s nonce', async (t) => {
  const key = new DpopKey()
  t.equal(key.observe('https://api.test/x', { 'dpop-nonce': 'n-1' }, true), true, 'a challenge with a new nonce is worth a retry')
  t.equal(key.observe('https://api.test/y', { 'dpop-nonce': ['n-1'] }, true), false, 'the same nonce again is not')
  t.equal(key.observe('https://api.test/y', { 'dpop-nonce': 'bad nonce\n' }, true), false, 'an unprintable nonce is ignored')
  t.equal(key.observe('https://api.test/y', {}, true), false)
  const proof = key.proof('GET', 'https://api.test/v1/items?q=1#f', 'tok')
  const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] })
  t.match(payload, { htm: 'GET', htu: 'https://api.test/v1/items', nonce: 'n-1', ath: createHash('sha256').update('tok').digest('base64url') })
  t.notOk('d' in (protectedHeader.jwk as object), 'only the public key travels')
  t.notMatch(key.proof('POST', 'https://other.test/t'), /\.$/)
  t.notOk('nonce' in (await jwtVerify(key.proof('POST', 'https://other.test/t'), EmbeddedJWK)).payload, 'nonces are per origin')
  t.not(decodeProtectedHeader(new DpopKey().proof('GET', 'https://a.test/')).jwk, protectedHeader.jwk)
  for (let i = 0; i < 300; i++) key.observe(`https://h${i}.test/`, { 'dpop-nonce': `n${i}` }, false)
  t.notOk('nonce' in (await jwtVerify(key.proof('GET', 'https://api.test/'), EmbeddedJWK)).payload, 'the oldest origins are forgotten past the bound')
})

t.test('nonce challenges are recognised in any WWW-Authenticate form', async (t) => {
  t.ok(isNonceChallenge({ 'www-authenticate': 'DPoP error="use_dpop_nonce"' }))
  t.ok(isNonceChallenge({ 'www-authenticate': ['Bearer realm="x"', 'DPoP algs="ES256", error=use_dpop_nonce'] }))
  t.notOk(isNonceChallenge({ 'www-authenticate': 'Bearer error="use_dpop_nonce"' }))
  t.notOk(isNonceChallenge({}))
})

t.test('dpop: true wants token_type DPoP; a Bearer answer is refused with a clear message', async (t) => {
  const body = (type: string): Buffer => Buffer.from(JSON.stringify({ access_token: 'opaque-token', token_type: type, expires_in: 60 }))
  const key = new DpopKey()
  t.equal(parseTokenResponse(body('DPoP'), Date.now(), 'token endpoint idp', key).dpop, key)
  t.throws(() => parseTokenResponse(body('Bearer'), Date.now(), 'token endpoint idp', key), { message: /token_type Bearer, not DPoP/ })
  t.throws(() => parseTokenResponse(Buffer.from('{"access_token":"x"}'), Date.now(), 'token endpoint idp', key), { message: /unusable token_type/ })
  t.throws(() => parseTokenResponse(body('DPoP'), Date.now(), 'token endpoint idp'), { message: /token_type DPoP, not Bearer/ })
})
