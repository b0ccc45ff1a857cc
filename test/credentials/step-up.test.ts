import t, { type Test } from 'tap'
import { harness, makeConfig } from './fakes.js'

const MIN = 60_000

const oauth = {
  type: 'oauth2_client_credentials', resource: 'https://mcp.example.com/mcp', client_id: 'a', client_secret: 's',
}

/** An OAuth issuer that allows stepping up to repo:write; the harness builds a FakeIssuer in its place. */
const issuers = {
  mcp: { ...oauth, step_up_scopes: ['repo:write'] },
  plain: oauth,
}

function setUp (t: Test) {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({
    reader: { issuer: 'mcp', scopes: ['repo:read'] },
    other: { issuer: 'mcp', scopes: ['repo:read'] },
    fixed: { issuer: 'plain', scopes: ['repo:read'] },
  }, issuers))
  return { h, m }
}

t.test('an allowed insufficient_scope challenge gets one widened credential; current() is unchanged', async (t) => {
  const { h, m } = setUp(t)
  await m.start()
  const fake = h.issuers.get('mcp')!
  const before = m.current('reader')
  const calls = fake.calls.length

  const [a, b] = await Promise.all([m.stepUp('reader', 'repo:write'), m.stepUp('reader', 'repo:read repo:write')])
  t.ok(a !== undefined && a.id === b?.id, 'concurrent challenges share one fetch')
  t.equal(fake.calls.length, calls + 1)
  t.same(fake.calls.at(-1)?.scopes, ['repo:read', 'repo:write'], 'the tool\'s own scopes plus the one asked for')
  t.equal(fake.calls.at(-1)?.tool, 'reader')
  t.match(h.sink.of('credential.issued').at(-1),
    { tool: 'reader', issuer: 'mcp', credential_id: a?.id, scopes: ['repo:read', 'repo:write'], reason: 'step_up' })
  t.equal(m.current('reader')?.id, before?.id, 'the tool\'s own credential is still what is injected first')
  t.equal(m.current('other')?.id, before?.id, 'a tool sharing the slot is not widened')

  t.equal((await m.stepUp('reader', 'repo:write'))?.id, a?.id, 'held while fresh')
  await h.clock.advance(6 * MIN) // past half of the fake's 10 min lifetime
  const again = await m.stepUp('reader', 'repo:write')
  t.not(again?.id, a?.id, 'fetched again once half its life has passed')
})

t.test('a challenge the config does not allow is not followed: undefined, no issuer call', async (t) => {
  const { h, m } = setUp(t)
  await m.start()
  const calls = (h.issuers.get('mcp')?.calls.length ?? 0) + (h.issuers.get('plain')?.calls.length ?? 0)
  t.equal(await m.stepUp('reader', 'admin'), undefined, 'a scope outside step_up_scopes')
  t.equal(await m.stepUp('reader', 'repo:write admin'), undefined, 'all or nothing')
  t.equal(await m.stepUp('reader', 'repo:read'), undefined, 'nothing new asked for')
  t.equal(await m.stepUp('reader', ''), undefined)
  t.equal(await m.stepUp('reader', 'repo:write "x'), undefined, 'not a scope token (RFC 6749 §3.3)')
  t.equal(await m.stepUp('fixed', 'repo:write'), undefined, 'an issuer without step_up_scopes')
  t.equal(await m.stepUp('nope', 'repo:write'), undefined, 'an unknown tool')
  t.equal((h.issuers.get('mcp')?.calls.length ?? 0) + (h.issuers.get('plain')?.calls.length ?? 0), calls)
})

t.test('a failed step-up is audited and resolves to undefined', async (t) => {
  const { h, m } = setUp(t)
  await m.start()
  h.issuers.get('mcp')!.mode = 'fail'
  t.equal(await m.stepUp('reader', 'repo:write'), undefined)
  t.match(h.sink.of('credential.refresh_failed').at(-1), {
    tool: 'reader',
    issuer: 'mcp',
    error: /^SIDEKEY_ISSUER_FAILED: token endpoint answered 500 \(step-up to repo:read repo:write\)$/,
  })
  h.issuers.get('mcp')!.mode = 'ok'
  t.ok(await m.stepUp('reader', 'repo:write'), 'a failure is not cached')
})
