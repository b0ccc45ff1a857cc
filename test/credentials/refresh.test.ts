import t, { type Test } from 'tap'
import { REJECTED_COOLDOWN_MS } from '../../src/credentials/refresher.js'
import { sanitizeErrorText } from '../../src/credentials/error-text.js'
import { IssuerError } from '../../src/errors.js'
import { settle } from './fake-clock.js'
import { harness, makeConfig } from './fakes.js'

const MIN = 60_000

/** No token handed out by any fake appears in anything the sink received, in status, or in jwks. */
function assertNoTokens (t: Test, h: ReturnType<typeof harness>, extra: unknown = null): void {
  const seen = JSON.stringify([h.sink.events, extra])
  const leaked = h.tokens().filter((tok) => seen.includes(tok) || seen.includes(tok.split('.')[1] as string))
  t.same(leaked, [], 'no token in any emitted event or status')
}

t.test('refreshes at T/2: about one issuer call per half-life, and no gap across rotations', async (t) => {
  const h = harness(t.teardown.bind(t), { random: Math.random })
  const m = h.manager(makeConfig({ github: {} }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  t.equal(issuer.calls.length, 1)
  let gaps = 0
  // 10 lifetimes of 10 min, looked at every 10 s.
  for (let i = 0; i < 600; i++) {
    await h.clock.advance(10_000)
    if (m.current('github') === undefined) gaps++
  }
  const perHalfLife = (issuer.calls.length - 1) / 20
  t.ok(perHalfLife >= 1 && perHalfLife <= 1.12, `issuer calls per half-life ≈ 1 (got ${perHalfLife})`)
  t.equal(gaps, 0, 'a valid credential was there at every instant')
  t.equal(h.sink.of('credential.issued').length, issuer.calls.length)
  t.same([...new Set(h.sink.of('credential.issued').slice(1).map((e) => e.reason))], ['scheduled'])
  assertNoTokens(t, h, m.status())
})

t.test('a long-lived credential is refreshed no later than 5 min before expiry', async (t) => {
  const h = harness(t.teardown.bind(t), { ttlMs: 120 * MIN })
  const m = h.manager(makeConfig({ github: { refresh: { at: 0.99, jitter: 0 } } }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  await h.clock.advance(115 * MIN - 1)
  t.equal(issuer.calls.length, 1)
  await h.clock.advance(1)
  t.equal(issuer.calls.length, 2, 'refreshed at expiry − 5 min, not at 99 % of the lifetime')
})

t.test('outage: the cached credential is served until expiresAt − skew, then fail closed, then recovery', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ github: {}, other: { scopes: ['x'] } }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  const first = m.current('github')!
  issuer.mode = 'fail'
  const usableUntil = first.expiresAt! - 30_000 // 10 min lifetime: 30 s skew
  while (h.clock.now() < usableUntil - MIN) {
    await h.clock.advance(MIN)
    t.equal(m.current('github')?.id, first.id)
  }
  await h.clock.advanceTo(usableUntil - 1)
  t.equal(m.current('github')?.id, first.id, 'still served 1 ms before expiresAt − skew')
  t.same(m.unready(), [])
  const failures = h.sink.of('credential.refresh_failed').filter((e) => e.tool === 'github')
  t.ok(failures.length >= 5, 'every failed attempt is audited')
  t.same(failures.map((e) => e.attempt), failures.map((_, i) => i + 1))
  t.equal(failures[0]?.error, 'SIDEKEY_ISSUER_FAILED: token endpoint answered 500')

  await h.clock.advance(1)
  t.equal(m.current('github'), undefined, 'fail closed at expiresAt − skew')
  t.same(m.unready(), ['github', 'other'])
  t.ok(m.retryAfterSeconds('github') >= 1)
  t.same(h.sink.of('credential.expired').filter((e) => e.credential_id === first.id), [{ event: 'credential.expired', tool: 'github', credential_id: first.id }])

  issuer.mode = 'ok'
  await h.clock.advance(2 * MIN) // longer than the longest backoff
  const back = m.current('github')
  t.ok(back !== undefined && back.id !== first.id, 'a new credential once the issuer is back')
  t.same(m.unready(), [])
  t.equal(h.sink.of('credential.expired').length, 2, 'expired once per credential (one per slot here)')
  t.equal(m.status().github?.last_refresh?.result, 'success')
  assertNoTokens(t, h, m.status())
})

t.test('500 concurrent refreshRejected at expiry make exactly one issuer call', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ github: {} }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  const first = m.current('github')!
  issuer.mode = 'fail'
  await h.clock.advanceTo(first.expiresAt! - 30_000)
  t.equal(m.current('github'), undefined)
  issuer.mode = 'manual'
  const before = issuer.calls.length
  const waiting = Array.from({ length: 500 }, () => m.refreshRejected('github', first.id))
  const rotated = m.rotate('github')
  await settle()
  t.equal(issuer.calls.length - before, 1, 'one call in flight')
  issuer.release()
  const results = await Promise.all(waiting)
  const fresh = await rotated
  t.equal(issuer.calls.length - before, 1, 'the issuer saw exactly one request')
  t.ok(results.every((r) => r?.id === fresh.id) && fresh.id !== first.id, 'every caller got the same new credential')
  t.equal(h.sink.of('credential.issued').filter((e) => e.credential_id === fresh.id).length, 1)
})

t.test('retries follow 1 s ×1.6 backoff, capped at 120 s, and honour Retry-After', async (t) => {
  const h = harness(t.teardown.bind(t)) // random() = 0.5: no jitter
  const m = h.manager(makeConfig({ github: {} }))
  const issuer = h.issuers.get('fake')!
  issuer.mode = 'fail'
  await m.start()
  t.same(m.unready(), ['github'], 'start resolved on the first failure')
  t.equal(m.retryAfterSeconds('github'), 1)
  await h.clock.advance(20 * MIN)
  const gaps = issuer.callTimes.slice(1).map((at, i) => at - (issuer.callTimes[i] as number))
  t.same(gaps.slice(0, 12), [1000, 1600, 2560, 4096, 6554, 10486, 16777, 26844, 42950, 68719, 109951, 120000])
  t.ok(gaps.slice(11).every((g) => g === 120_000), 'capped at 120 s')
  t.same(h.sink.of('credential.refresh_failed').slice(0, gaps.length).map((e) => e.retry_in_ms), gaps, 'retry_in_ms is what happened')

  const status = m.status().github!
  t.equal(status.last_refresh?.result, 'failure')
  t.equal(status.last_refresh?.error, 'SIDEKEY_ISSUER_FAILED: token endpoint answered 500')
  t.equal(Date.parse(status.next_refresh_at!), issuer.callTimes.at(-1)! + 120_000)
  t.equal(m.retryAfterSeconds('github'), Math.ceil((Date.parse(status.next_refresh_at!) - h.clock.now()) / 1000))

  await h.clock.advanceTo(Date.parse(status.next_refresh_at!) - 1)
  issuer.failure = () => new IssuerError('SIDEKEY_ISSUER_FAILED', 'token endpoint answered 429', { retryAfterMs: 300_000 })
  await h.clock.advance(1)
  const lastCall = issuer.callTimes.at(-1)!
  t.equal(h.sink.of('credential.refresh_failed').at(-1)?.retry_in_ms, 300_000, 'Retry-After beyond the cap wins')
  issuer.mode = 'ok'
  await h.clock.advance(300_000 - 1)
  t.equal(issuer.callTimes.at(-1), lastCall, 'no call before Retry-After elapsed')
  await h.clock.advance(1)
  t.ok(m.current('github') !== undefined, 'recovered')
  t.equal(h.sink.of('credential.issued').at(-1)?.reason, 'initial')
})

t.test('a hanging issuer is aborted by the timeout; the data path never waits', async (t) => {
  for (const [issuerConfig, timeout] of [[{ type: 'file', path: '/x' }, 10_000], [{ type: 'exec', command: ['x'], timeout: '3s' }, 3000]] as const) {
    const h = harness(t.teardown.bind(t))
    const m = h.manager(makeConfig({ github: {} }, { fake: issuerConfig }))
    const issuer = h.issuers.get('fake')!
    issuer.mode = 'hang'
    let started = false
    const starting = m.start().then(() => { started = true })
    await settle()
    t.equal(m.current('github'), undefined, 'current() answers at once while the issuer hangs')
    await h.clock.advance(timeout - 1)
    t.notOk(started)
    t.notOk(issuer.calls[0]?.signal.aborted)
    await h.clock.advance(1)
    await starting
    t.ok(issuer.calls[0]?.signal.aborted, `the signal fired after ${timeout} ms`)
    t.match(h.sink.of('credential.refresh_failed')[0]?.error, /^SIDEKEY_ISSUER_TIMEOUT: /)
    issuer.mode = 'ok'
    await h.clock.advance(1000)
    t.ok(m.current('github') !== undefined, 'the retry after the timeout succeeds')
  }
})

t.test('refreshRejected twice with the same id makes one forced refresh, and never loops', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ github: {} }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  const a = m.current('github')!
  const b = await m.refreshRejected('github', a.id)
  t.ok(b !== undefined && b.id !== a.id)
  t.equal(await m.refreshRejected('github', a.id), b, 'a credential newer than the rejected one comes back at once')
  t.equal(issuer.calls.length, 2, 'one forced refresh')
  t.equal(h.sink.of('credential.issued').at(-1)?.reason, 'rejected')

  issuer.mode = 'fail'
  t.equal(await m.refreshRejected('github', b!.id), undefined, 'within the cooldown a 401 passes through')
  t.equal(issuer.calls.length, 2, 'and costs no issuer call')
  await h.clock.advance(REJECTED_COOLDOWN_MS)
  t.equal(await m.refreshRejected('github', b!.id), undefined, 'the forced refresh failed: nothing to replay with')
  t.equal(await m.refreshRejected('github', b!.id), undefined)
  t.equal(issuer.calls.length, 3, 'still only one forced refresh for that id')
  t.equal(m.current('github')?.id, b!.id, 'the current credential is kept for other requests')
  t.equal(await m.refreshRejected('nope', 'x'), undefined, 'unknown tool')
})

t.test('a credential without expiry is refreshed only on rotate, 401 or issuer change', async (t) => {
  const h = harness(t.teardown.bind(t), { ttlMs: undefined })
  const m = h.manager(makeConfig({ search: {} }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  await h.clock.advance(48 * 60 * MIN)
  t.equal(issuer.calls.length, 1, 'no scheduled refresh')
  t.equal(h.clock.pending, 0, 'and no timer')
  t.equal(m.status().search?.expires_at, null)
  issuer.changed()
  await settle()
  t.equal(issuer.calls.length, 2)
  t.equal(h.sink.of('credential.issued').at(-1)?.reason, 'changed')
})

t.test('close() clears every timer and aborts the call in flight', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ a: {}, b: { scopes: ['s'] } }))
  await m.start()
  t.ok(h.clock.pending > 0)
  h.issuers.get('fake')!.mode = 'hang'
  void m.rotate('a').catch(() => {})
  await settle()
  await m.close()
  t.equal(h.clock.pending, 0)
  t.ok(h.issuers.get('fake')!.calls.at(-1)?.signal.aborted)
  t.equal(h.issuers.get('fake')!.closed, 1, 'the issuer is closed')
  const events = h.sink.events.length
  await h.clock.advance(60 * MIN)
  t.equal(h.sink.events.length, events, 'nothing happens after close')
})

t.test('foreign error messages are sanitised before they reach an event', async (t) => {
  const h = harness(t.teardown.bind(t))
  const m = h.manager(makeConfig({ github: {} }))
  await m.start()
  const issuer = h.issuers.get('fake')!
  const token = issuer.tokens[0]!
  issuer.failure = () => Object.assign(new Error(`invalid token ${token}; Bearer abc.def access_token=s3cr3t`), { code: 'ECONNRESET' })
  issuer.mode = 'fail'
  await t.rejects(m.rotate('github'), { code: 'SIDEKEY_ISSUER_FAILED' })
  const error = h.sink.of('credential.refresh_failed')[0]?.error ?? ''
  t.match(error, /^SIDEKEY_ISSUER_FAILED: .*\(ECONNRESET\)$/)
  t.notMatch(error, /s3cr3t|abc\.def/)
  issuer.failure = () => new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) })
  await t.rejects(m.rotate('github'))
  t.equal(h.sink.of('credential.refresh_failed')[1]?.error, 'SIDEKEY_ISSUER_FAILED: fetch failed (ECONNREFUSED)')
  assertNoTokens(t, h, m.status())
})

t.test('an already expired credential, a thrown string or a synchronous throw are refresh failures', async (t) => {
  const h = harness(t.teardown.bind(t), { ttlMs: 1000 })
  const m = h.manager(makeConfig({ github: {} }))
  const issuer = h.issuers.get('fake')!
  issuer.ttlMs = 0
  await m.start()
  t.equal(m.current('github'), undefined, 'a credential that is dead on arrival is not served')
  t.equal(h.sink.of('credential.refresh_failed')[0]?.error, 'SIDEKEY_ISSUER_RESPONSE: issuer "fake" returned a credential that has already expired')
  t.equal(h.sink.of('credential.refresh_failed')[0]?.retry_in_ms, 1000, 'and backs off like any failure')

  // Not an Error: what a careless issuer library might throw.
  const plain: unknown = 'plain string'
  issuer.failure = () => { throw plain }
  issuer.mode = 'fail'
  await t.rejects(m.rotate('github'), { code: 'SIDEKEY_ISSUER_FAILED', message: 'issuer call failed' })
  issuer.fetch = () => { throw new RangeError('') }
  await t.rejects(m.rotate('github'), { code: 'SIDEKEY_ISSUER_FAILED' })
  t.equal(h.sink.of('credential.refresh_failed').at(-1)?.error, 'SIDEKEY_ISSUER_FAILED: issuer call failed (RangeError)')
})

t.test('sanitizeErrorText drops what looks like a credential', async (t) => {
  t.equal(sanitizeErrorText('got Bearer abc and basic Zm9v'), 'got Bearer [REDACTED] and basic [REDACTED]')
  t.equal(sanitizeErrorText('{"access_token":"abc","client_secret": "x"}'), '{"access_token":"[REDACTED]","client_secret": "[REDACTED]"}')
  t.equal(sanitizeErrorText('jwt eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig here'), 'jwt [REDACTED] here')
  t.equal(sanitizeErrorText('line\r\nbreak\u001b[31m'), 'line break [31m')
  t.equal(sanitizeErrorText('my known pw1 here', ['pw1']), 'my known pw1 here', 'too short to be a known secret')
  t.equal(sanitizeErrorText('my known pw12 here', ['pw12']), 'my known [REDACTED] here')
  t.equal(sanitizeErrorText('x '.repeat(400)).length, 301)
})
