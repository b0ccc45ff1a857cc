import t from 'tap'
import { CredentialStore, isUsable, skewOf, usableUntil } from '../../src/credentials/store.js'
import type { Credential } from '../../src/credentials/provider.js'
import { Secret } from '../../src/util/secret.js'

const cred = (id: string, issuedAt: number, lifetimeMs: number | undefined): Credential => ({
  token: new Secret(`token-${id}`), id, issuedAt, expiresAt: lifetimeMs === undefined ? undefined : issuedAt + lifetimeMs,
})

t.test('the skew margin is min(30 s, 10 % of the lifetime)', async (t) => {
  t.equal(skewOf(cred('a', 0, 3_600_000)), 30_000, 'an hour-long token stops 30 s early')
  t.equal(skewOf(cred('a', 0, 60_000)), 6_000, 'a minute-long token stops 6 s early')
  t.equal(skewOf(cred('a', 0, undefined)), 0)
  t.equal(usableUntil(cred('a', 0, undefined)), Infinity)
})

t.test('a credential is usable while expiresAt − skew > now', async (t) => {
  const c = cred('a', 1000, 60_000)
  t.ok(isUsable(c, 1000))
  t.ok(isUsable(c, 1000 + 53_999))
  t.notOk(isUsable(c, 1000 + 54_000))
  t.ok(isUsable(cred('b', 0, undefined), Number.MAX_SAFE_INTEGER), 'no expiry: always usable')
})

t.test('current + previous: a new credential pushes the current one to previous', async (t) => {
  const store = new CredentialStore()
  t.equal(store.usable(0), undefined)
  t.equal(store.put(cred('a', 0, 600_000)), true)
  t.equal(store.put(cred('b', 300_000, 600_000)), true)
  t.equal(store.latest()?.id, 'b')
  t.equal(store.previous(300_000)?.id, 'a')
  t.equal(store.previous(600_000), undefined, 'the previous one is dropped once it expires')
  t.equal(store.put(cred('b', 300_000, 600_000)), false, 'the same id again is not a new credential')
  t.equal(store.usable(900_000 - 30_000), undefined, 'past expiresAt − skew nothing is served')
  t.equal(store.latest()?.id, 'b', 'but it is still known (status, 401 matching)')
})

t.test('revokePrevious drops the previous credential at once', async (t) => {
  const store = new CredentialStore()
  store.put(cred('a', 0, 600_000))
  store.put(cred('b', 1, 600_000))
  t.equal(store.revokePrevious()?.id, 'a')
  t.equal(store.previous(2), undefined)
  t.equal(store.revokePrevious(), undefined)
  t.same(Object.keys(store.snapshot()).sort(), ['current', 'previous'])
})
