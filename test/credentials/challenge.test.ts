import t from 'tap'
import { bearerChallenge } from '../../src/credentials/challenge.js'

t.test('the Bearer challenge parameters, among other challenges, quoted or not', async (t) => {
  t.same(bearerChallenge('Bearer error="insufficient_scope", scope="repo:read repo:write"'), { error: 'insufficient_scope', scope: 'repo:read repo:write' })
  t.same(bearerChallenge('DPoP algs="ES256", Bearer realm="x", error=insufficient_scope, scope="a b"'), { realm: 'x', error: 'insufficient_scope', scope: 'a b' })
  t.same(bearerChallenge(['Basic realm="r"', 'bearer resource_metadata="https://m.test/.well-known/x", error="invalid_token"']),
    { resource_metadata: 'https://m.test/.well-known/x', error: 'invalid_token' })
  t.same(bearerChallenge('Bearer scope="say \\"hi\\", and more", error="insufficient_scope", Basic realm="later"'),
    { scope: 'say "hi", and more', error: 'insufficient_scope' })
  t.equal(bearerChallenge('Basic realm="only"'), undefined)
  t.equal(bearerChallenge(undefined), undefined)
  t.same(bearerChallenge('Bearer'), {})
})
