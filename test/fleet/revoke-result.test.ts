import t from 'tap'
import { revokeResult } from '../../src/fleet/revoke-result.js'
import type { RevokeOutcome } from '../../src/credentials/provider.js'

/** What each issuer type's revoke really did, as an instance answers it (the file case runs live in answers.test). */
const outcome = (issuerType: string, o: Partial<RevokeOutcome> = {}): RevokeOutcome =>
  ({ issuerType, dropped: 1, revokedAtIssuer: 0, revocable: false, unchanged: false, ...o })

t.test('revoked where the issuer can: local_jwt withdraws its keys, oauth2 with revocation_url revokes', async (t) => {
  t.same(revokeResult([outcome('local_jwt', { revocable: true, revokedAtIssuer: 1 })]), { result: 'applied' })
  t.same(revokeResult([outcome('oauth2_client_credentials', { revocable: true, revokedAtIssuer: 1 })]), { result: 'applied' })
  t.same(revokeResult([outcome('file', { dropped: 0 })]), { result: 'applied' }, 'nothing was held: nothing left to revoke')
})

t.test('not revocable: the same credential read again, or an old one the issuer cannot revoke', async (t) => {
  t.match(revokeResult([outcome('file', { dropped: 0, unchanged: true })]),
    { result: 'not_revocable', reason: /^file issuer: .*rotate the secret at its source$/ })
  t.match(revokeResult([outcome('exec', { dropped: 0, unchanged: true })]),
    { result: 'not_revocable', reason: /^exec issuer: the command returned the same credential/ })
  t.match(revokeResult([outcome('oauth2_client_credentials')]),
    { result: 'not_revocable', reason: /without revocation_url: a new token is in use here; the old one stays valid/ })
  t.match(revokeResult([outcome('file')]), { result: 'not_revocable', reason: /^file issuer: a new secret is in use here/ })
  const all = revokeResult([outcome('local_jwt', { revocable: true }), outcome('file', { dropped: 0, unchanged: true })])
  t.match(all, { result: 'not_revocable', reason: /^file issuer: / }, '`*`: one slot not revoked is enough to say so')
})

t.test('failed: no replacement, or the issuer did not confirm', async (t) => {
  t.same(revokeResult([outcome('local_jwt', { revocable: true }), outcome('file', { error: 'SIDEKEY_ISSUER_FAILED' })]),
    { result: 'failed', error: 'SIDEKEY_ISSUER_FAILED' })
  t.same(revokeResult([outcome('oauth2_token_exchange', { revocable: true, issuerError: 'HTTP 503' })]),
    { result: 'failed', error: 'oauth2_token_exchange issuer: the revocation was not confirmed' })
})
