import t from 'tap'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { createIssuer } from '../../src/credentials/issuers/index.js'
import { CredentialRefresher } from '../../src/credentials/refresher.js'
import { SidekeyError } from '../../src/errors.js'
import { FakeClock } from './fake-clock.js'
import { FakeIssuer, RecordingSink, harness, makeConfig } from './fakes.js'

const MIN = 60_000

t.test('tools asking for the same issuer, scopes and audience share one credential', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({
    a: { scopes: ['x', 'y'], audience: 'https://api.test' },
    b: { scopes: ['y', 'x', 'x'], audience: 'https://api.test' },
    c: { scopes: ['x', 'y'] },
  }))
  t.same(m.unready(), ['a', 'b', 'c'], 'nothing is ready before start')
  await m.start()
  const issuer = h.issuers.get('fake')!
  t.equal(issuer.calls.length, 2, 'one issuer call per slot')
  t.equal(m.current('a')?.id, m.current('b')?.id)
  t.not(m.current('a')?.id, m.current('c')?.id, 'another audience is another credential')
  t.same(issuer.calls.map((c) => [c.tool, c.scopes, c.audience, c.instanceId]),
    [['a', ['x', 'y'], 'https://api.test', 'agent-1'], ['c', ['x', 'y'], undefined, 'agent-1']])
  const status = m.status()
  t.same(status.a?.shared_with, ['b'])
  t.same(status.b?.shared_with, ['a'])
  t.same(status.c?.shared_with, [])
  const issued = h.sink.of('credential.issued')[0]
  t.match(issued, { tool: 'a', issuer: 'fake', scopes: ['x', 'y'], shared_with: ['b'], reason: 'initial', expires_at: status.a?.expires_at })
  t.equal(status.a?.credential_id, m.current('a')?.id)
  t.equal(status.a?.age_seconds, 0)
  t.equal(status.a?.expires_in_seconds, 600)
  t.equal(status.a?.last_refresh?.result, 'success')
  t.equal(Date.parse(status.a?.next_refresh_at ?? ''), h.clock.now() + 5 * MIN)

  // A rotate through one tool serves both; the events name the tool that asked.
  const rotated = await m.rotate('b')
  t.equal(m.current('a')?.id, rotated.id)
  t.match(h.sink.of('credential.issued').at(-1), { tool: 'b', shared_with: ['a'], reason: 'rotate' })
})

t.test('the earliest refresh point among tools sharing a slot wins', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ a: { refresh: { at: 0.8, jitter: 0 } }, b: { refresh: { at: 0.3, jitter: 0 } } }))
  await m.start()
  t.equal(Date.parse(m.status().a?.next_refresh_at ?? ''), h.clock.now() + 3 * MIN)
})

t.test('rotate fetches now; with revokePrevious the old credential is revoked and dropped', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ github: {} }))
  await m.start()
  const a = m.current('github')!
  const b = await m.rotate('github')
  t.not(b.id, a.id)
  t.equal(m.current('github')?.id, b.id)
  t.same(h.sink.of('credential.revoked'), [], 'a plain rotate revokes nothing')
  const c = await m.rotate('github', { revokePrevious: true })
  t.same(h.sink.of('credential.revoked'), [{ event: 'credential.revoked', tool: 'github', credential_id: b.id }])
  t.equal(m.current('github')?.id, c.id)
  t.equal(await m.refreshRejected('github', b.id), c, 'a 401 for the revoked one is answered with the current one')

  await t.rejects(m.rotate('nope'), { code: 'SIDEKEY_UNKNOWN_TOOL', status: 404, details: { tool: 'nope' } })
  await t.rejects(m.rotate('nope'), SidekeyError)
  h.issuers.get('fake')!.mode = 'fail'
  await t.rejects(m.rotate('github'), { code: 'SIDEKEY_ISSUER_FAILED', status: 503 })
  t.equal(m.current('github')?.id, c.id, 'a failed rotate keeps the current credential')
})

t.test('the store drops the previous credential on revoke, and keeps it otherwise', async (t) => {
  const clock = new FakeClock()
  const sink = new RecordingSink()
  const issuer = new FakeIssuer(clock, 10 * MIN)
  const slot = new CredentialRefresher({
    issuerName: 'fake',
    issuer,
    tools: ['github'],
    scopes: [],
    audience: undefined,
    instanceId: 'i',
    refreshAt: 0.5,
    refreshJitter: 0,
    timeoutMs: 10_000,
    clock,
    audit: sink,
    random: () => 0.5,
  })
  t.teardown(() => slot.close())
  await slot.start()
  const a = slot.current()!
  await slot.rotate('github', false)
  t.equal(slot.state().previous?.id, a.id, 'previous kept during overlap')
  const b = slot.current()!
  await slot.rotate('github', true)
  t.equal(slot.state().previous, undefined, 'revoked: gone at once')
  t.equal(sink.of('credential.revoked')[0]?.credential_id, b.id)
})

t.test('a reload carries over slots whose issuer config is unchanged (previous)', async (t) => {
  const h = harness(t.teardown.bind(t))
  const issuers = { fake: { type: 'exec', command: ['fake'] }, other: { type: 'file', path: '/a' } }
  const m1 = h.manager(makeConfig({ a: {}, b: { issuer: 'other' } }, issuers))
  await m1.start()
  const fake = h.issuers.get('fake')!
  const other = h.issuers.get('other')!
  const a1 = m1.current('a')!
  const b1 = m1.current('b')!
  await h.clock.advance(MIN)

  const m2 = h.manager(makeConfig({ a: {}, a2: {}, b: { issuer: 'other' } }, { ...issuers, other: { type: 'file', path: '/b' } }), { previous: m1 })
  await m2.start()
  t.equal(fake.calls.length, 1, 'unchanged issuer: no new fetch')
  t.equal(m2.current('a')?.id, a1.id)
  t.equal(m2.current('a2')?.id, a1.id, 'a new tool joins the carried slot')
  t.equal(m2.status().a?.last_refresh?.result, 'success')
  t.equal(other.calls.length, 2, 'a changed issuer config fetches again')
  t.not(m2.current('b')?.id, b1.id)

  await m1.close()
  t.equal(fake.closed, 0, 'the old manager does not close the issuer it handed over')
  t.equal(other.closed, 1, 'but does close the one it kept')
  await h.clock.advance(4 * MIN)
  t.equal(fake.calls.length, 2, 'the carried slot refreshes on its old schedule (T/2 after issue)')
  await m2.close()
  t.equal(fake.closed, 1)

  // Another instance id: the credentials name another subject, so nothing is carried over.
  const m3 = h.manager(makeConfig({ a: {} }, issuers, 'agent-2'), { previous: m2 })
  await m3.start()
  t.equal(fake.calls.length, 3)
})

t.test('local_jwt through the manager: tokens verify against jwks(), which survives a reload', async (t) => {
  const h = harness(t.teardown.bind(t))
  const config = makeConfig({ demo: { issuer: 'local', scopes: ['read'], audience: 'https://demo.test' } }, { local: { type: 'local_jwt' } })
  const m1 = h.manager(config, { createIssuer })
  await m1.start()
  const cred = m1.current('demo')!
  const verify = async (keys: unknown[]): Promise<Record<string, unknown>> =>
    (await jwtVerify(cred.token.reveal(), createLocalJWKSet({ keys } as never), { currentDate: new Date(h.clock.now()) })).payload as Record<string, unknown>
  t.match(await verify(m1.jwks()), { sub: 'agent-1', aud: 'https://demo.test', scope: 'read', tool: 'demo', jti: cred.id, iss: 'https://sidekey.local' })

  const m2 = h.manager(config, { createIssuer, previous: m1 })
  await m2.start()
  await m1.close()
  t.equal(m2.current('demo')?.id, cred.id, 'the credential is carried over')
  t.same(m2.jwks(), m1.jwks(), 'and so are the signing keys')
  t.equal((await verify(m2.jwks())).jti, cred.id)
  t.notOk(JSON.stringify(h.sink.events).includes(cred.token.reveal()), 'the token is in no event')
  t.notOk(JSON.stringify(m2.status()).includes(cred.token.reveal()), 'nor in status')
})

t.test('start() never rejects when an issuer is down; the other tools are served', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ up: {}, down: { issuer: 'broken' } }, { fake: { type: 'exec', command: ['x'] }, broken: { type: 'exec', command: ['y'] } }))
  h.issuers.get('broken')!.mode = 'fail'
  await m.start()
  t.ok(m.current('up') !== undefined)
  t.equal(m.current('down'), undefined)
  t.same(m.unready(), ['down'])
  t.same(m.status().down, {
    issuer: 'broken',
    credential_id: null,
    issued_at: null,
    expires_at: null,
    age_seconds: null,
    expires_in_seconds: null,
    shared_with: [],
    last_refresh: { result: 'failure', at: new Date(h.clock.now()).toISOString(), error: 'SIDEKEY_ISSUER_FAILED: token endpoint answered 500' },
    next_refresh_at: new Date(h.clock.now() + 1000).toISOString(),
  })
  t.equal(m.retryAfterSeconds('down'), 1)
  t.equal(m.retryAfterSeconds('unknown'), 1)
  t.equal(m.current('unknown'), undefined)
  t.same(m.jwks(), [], 'no signing issuer, no keys')
})
