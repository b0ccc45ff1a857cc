import t from 'tap'
import { anomalyConfig, anomalyRateLimit, createDetectors, AnomalyRateLimiter, AuthFailuresDetector, CredentialEchoedDetector, MethodDeniedDetector, NewEndpointDetector, RateSpikeDetector, UnexpectedCredentialDetector, UnmatchedDestinationDetector } from '../../src/anomaly/index.js'
import { looksLikeSecret, shannonEntropy } from '../../src/secrets/secret-shape.js'
import { pathShape } from '../../src/secrets/path-shape.js'
import type { AnomalyFinding, Detector } from '../../src/anomaly/detector.js'
import type { AuditEvent } from '../../src/audit/events.js'
import { config as configSchema } from '../../src/config/schema.js'
import { denied, used } from './helpers.js'

const T0 = Date.parse('2026-01-01T00:00:00Z')
const MIN = 60_000

/** Feeds events at the given times and returns what fired. */
function run (d: Detector, events: Array<[AuditEvent, number]>): AnomalyFinding[] {
  const out: AnomalyFinding[] = []
  for (const [e, now] of events) {
    const f = d.observe(e, now)
    if (f !== undefined) out.push(f)
  }
  return out
}

/** Ordinary traffic: a few endpoints, 200s, steady 20/min, for `minutes`. */
function normal (minutes: number, start = T0): Array<[AuditEvent, number]> {
  const out: Array<[AuditEvent, number]> = []
  const paths = ['/repos/acme/app', '/repos/acme/app/issues/1', '/repos/acme/app/pulls/77', '/user']
  for (let m = 0; m < minutes; m++) {
    for (let i = 0; i < 20; i++) out.push([used({ path: paths[i % paths.length]!.replace(/\d+/, String(i + m)) }), start + m * MIN + i * 1000])
  }
  return out
}

t.test('unmatched_destination fires on egress.denied and only on it', async (t) => {
  const d = new UnmatchedDestinationDetector()
  t.same(run(d, normal(2)), [])
  t.same(run(d, [[denied({ host: '', port: 0, reason: 'bad_request_target' }), T0], [denied({ reason: 'headers_too_large' }), T0]]), [],
    'a malformed request is not a destination')
  const [f] = run(d, [[denied({ host: 'exfil.test', port: 8443, method: 'CONNECT' }), T0]])
  t.same(f, { kind: 'unmatched_destination', tool: null, detail: 'CONNECT exfil.test:8443 denied (no_tool)' })
  const long = run(d, [[denied({ host: 'a'.repeat(1000) }), T0]])[0]!
  t.ok(long.detail.length < 300, 'bounded detail')
})

t.test('unexpected_credential fires when the request path classified a stripped value as unexpected', async (t) => {
  const d = new UnexpectedCredentialDetector()
  t.same(run(d, [...normal(2), [used({ placeholder: 'absent' }), T0]]), [])
  const [f] = run(d, [[used({ placeholder: 'unexpected', path: '/v1/keys/sk-live0123456789abcdefghij?key=sk-x' }), T0]])
  t.equal(f!.kind, 'unexpected_credential')
  t.equal(f!.tool, 'github')
  t.equal(f!.detail, 'GET /v1/keys/:id: the agent sent a credential other than the placeholder (stripped, not forwarded)')
})

t.test('method_denied fires on the refusal outcome', async (t) => {
  const d = new MethodDeniedDetector()
  t.same(run(d, [...normal(2), [used({ outcome: 'credential_unavailable', status: 503 }), T0]]), [])
  const [f] = run(d, [[used({ method: 'DELETE', path: '/repos/acme/app/42', outcome: 'method_denied', status: 403 }), T0]])
  t.same(f, { kind: 'method_denied', tool: 'github', detail: 'DELETE /repos/acme/app/:id refused: method not allowed for this tool' })
})

t.test('credential_echoed fires when the upstream sent the credential back, naming where, never what', async (t) => {
  const d = new CredentialEchoedDetector()
  t.same(run(d, normal(2)), [])
  const [f] = run(d, [[used({ path: '/v1/reflect/42', status: 301, echoed: ['location', 'body'] }), T0]])
  t.same(f, { kind: 'credential_echoed', tool: 'github', detail: 'GET /v1/reflect/:id 301: credential echoed in location, body; replaced by the placeholder' })
})

t.test('new_endpoint learns during its window, then reports each new shape once', async (t) => {
  const d = new NewEndpointDetector({ learningWindowMs: 10 * MIN, maxShapes: 1000 })
  t.same(run(d, normal(30)), [], 'ids in paths fold, so normal traffic after learning stays quiet')
  const later = T0 + 31 * MIN
  const found = run(d, [
    [used({ method: 'DELETE', path: '/repos/acme/app' }), later],
    [used({ method: 'DELETE', path: '/repos/acme/app' }), later + 1],
    [used({ path: '/admin/users/12345/keys' }), later + 2],
    [used({ path: '/admin/users/67890/keys' }), later + 3],
    [used({ path: '/orgs/acme/secrets', outcome: 'method_denied' }), later + 4],
  ])
  t.same(found.map((f) => f.detail), [
    'DELETE /repos/acme/app not seen during the learning window',
    'GET /admin/users/:id/keys not seen during the learning window',
  ])
  // Another tool has its own learning window, starting at its own first use.
  t.same(run(d, [[used({ tool: 'crm', path: '/x' }), later], [used({ tool: 'crm', path: '/y' }), later + MIN]]), [])
})

t.test('new_endpoint keeps a bounded set of shapes per tool', async (t) => {
  const d = new NewEndpointDetector({ learningWindowMs: MIN, maxShapes: 50 })
  const events: Array<[AuditEvent, number]> = []
  for (let i = 0; i < 10_000; i++) events.push([used({ path: `/p${String.fromCharCode(97 + (i % 26))}${Math.floor(i / 26)}x/y` }), T0 + 2 * MIN + i])
  const found = run(d, [[used({}), T0], ...events])
  t.equal(found.length, 50, '49 new shapes (one was learned first), then one "no longer tracked" finding')
  t.match(found.at(-1)!.detail, /more than 50 endpoint shapes/)
})

t.test('path shapes fold ids and never keep the query', async (t) => {
  const cases: Array<[string, string]> = [
    ['/repos/acme/app/issues/42', '/repos/acme/app/issues/:id'],
    ['/v1/files/file-abc?purpose=x&key=secret', '/v1/files/file-abc'],
    ['/objects/3f2b8c1e-9a4d-4e21-8f6b-1c2d3e4f5a6b', '/objects/:id'],
    ['/commits/9fceb02d0ae598e95dc970b74767f19372d61af8', '/commits/:id'],
    ['/v1/customers/cus_NffrFeUfNV2Hib', '/v1/customers/:id'],
    ['/blob/aGVsbG8gd29ybGQgdGhpcyBpcyBCYXNlNjQ9', '/blob/:id'],
    ['/bot123456789:AAEhBP0av28nQ3yT2BqR4v8Qk1bqzT9ew9E/sendMessage', '/:id/sendMessage'],
    ['/v1/models/gpt-4o-mini-2024-07-18', '/v1/models/gpt-4o-mini-2024-07-18'],
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/u/k3j4h5g6f7d8s9a0q1w2', '/u/:id'],
    ['/', '/'],
  ]
  for (const [path, shape] of cases) t.equal(pathShape(path), shape, path)
  t.ok(pathShape('/a'.repeat(500)).length < 200, 'bounded')
  t.ok(pathShape('/' + 'x'.repeat(500)) === '/:id', 'long segments fold')
})

t.test('rate_spike fires on a burst well above the baseline, not on steady traffic or a small bump', async (t) => {
  const opts = { windowMs: MIN, factor: 5, minCount: 100, baselineWindows: 30, warmupWindows: 5 }
  const steady = (minutes: number, perMin: number, start: number, tool = 'github'): Array<[AuditEvent, number]> => {
    const out: Array<[AuditEvent, number]> = []
    for (let m = 0; m < minutes; m++) for (let i = 0; i < perMin; i++) out.push([used({ tool }), start + m * MIN + Math.floor(i * MIN / perMin)])
    return out
  }
  const d = new RateSpikeDetector(opts)
  t.same(run(d, steady(60, 40, T0)), [], '40/min steady')
  t.same(run(d, steady(1, 150, T0 + 60 * MIN)), [], '150 in a minute is under 5x a 40/min baseline')
  const found = run(d, steady(1, 1000, T0 + 61 * MIN))
  t.equal(found.length, 1, 'fires once per window')
  t.match(found[0]!.detail, /^\d+ requests in 60s, baseline \d+\.\d per 60s$/)

  const fresh = new RateSpikeDetector(opts)
  t.same(run(fresh, steady(1, 1000, T0)), [], 'no baseline yet during warm-up: quiet')
  const small = new RateSpikeDetector(opts)
  t.same(run(small, [...steady(10, 1, T0), ...steady(1, 60, T0 + 10 * MIN)]), [], 'below min_count: quiet')
  t.equal(run(small, steady(1, 200, T0 + 11 * MIN)).length, 1, 'quiet tool bursting past min_count: fires')
  // Idle for hours: the baseline decays, and the first busy minute after it is judged against that.
  const idle = new RateSpikeDetector(opts)
  run(idle, steady(30, 300, T0))
  t.same(run(idle, steady(1, 300, T0 + 30 * MIN)), [], 'same rate as before: quiet')
})

t.test('auth_failures fires on a burst of upstream 401/403 within the window', async (t) => {
  const d = new AuthFailuresDetector({ threshold: 10, windowMs: MIN })
  const spread: Array<[AuditEvent, number]> = []
  for (let i = 0; i < 30; i++) spread.push([used({ status: i % 2 === 0 ? 401 : 403 }), T0 + i * 10_000])
  t.same(run(d, [...normal(5), ...spread]), [], 'one every 10s stays under 10 per minute')
  const refusals: Array<[AuditEvent, number]> = []
  for (let i = 0; i < 50; i++) refusals.push([used({ status: 403, outcome: 'method_denied' }), T0 + 10 * MIN + i])
  t.same(run(d, refusals), [], "sidekey's own refusals are not upstream failures")
  const burst: Array<[AuditEvent, number]> = []
  for (let i = 0; i < 25; i++) burst.push([used({ status: 401 }), T0 + 20 * MIN + i * 100])
  const found = run(d, burst)
  t.equal(found.length, 2, 'once per 10 failures')
  t.match(found[0]!.detail, /^10 responses with status 401\/403 from the upstream within \ds \(last: 401\)$/)
})

t.test('secret shapes: real-looking keys yes, placeholders no', async (t) => {
  const secrets = [
    'sk-proj-3f9aK2lmQ8xYz7Wv1TbN5cR0', 'sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx', 'Bearer ghp_0123456789abcdefghijABCDEFGHIJ012345',
    'gho_16C7e42F292c6912E7710c838347Ae178B4a', 'ghs_abcdefghijklmnopqrstuvwx', 'github_pat_11ABCDEFG0123456789_abcdefghij',
    'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp', 'xoxp-1234567890-abcdef', 'AKIAIOSFODNN7EXAMPLE', 'ASIAY34FZKBOKMUTVV7A',
    'AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe', 'glpat-xxxxxxxxxxxxxxxxxxxx',
    'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    'token 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b', 'q8Zr2LmX0vB7nT4kP1sW9yH3',
    'Basic ' + Buffer.from('user:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY').toString('base64'),
  ]
  const placeholders = [
    'sidekey', 'Bearer sidekey', 'placeholder', 'dummy-token-for-testing', 'changeme-changeme-1234', 'sk-placeholder',
    'your-api-key-goes-here', 'not-a-real-secret-value', '', '   ', 'application/json; charset=utf-8',
    '00000000-0000-0000-0000-000000000000', 'Basic ' + Buffer.from('user:sidekey').toString('base64'), 'xoxb-', 'AKIA',
  ]
  for (const s of secrets) t.ok(looksLikeSecret(s), `secret: ${s.slice(0, 12)}…`)
  for (const p of placeholders) t.notOk(looksLikeSecret(p), `placeholder: ${JSON.stringify(p)}`)
  t.equal(shannonEntropy(''), 0)
  t.equal(shannonEntropy('aaaa'), 0)
  t.equal(shannonEntropy('abcd'), 2)
})

t.test('the rate limit bounds log lines per kind and tool, then summarises once', async (t) => {
  const l = new AnomalyRateLimiter({ max: 10, windowMs: MIN })
  let allowed = 0
  for (let i = 0; i < 100_000; i++) if (l.allow('rate_spike', 'github', T0 + i % 1000)) allowed++
  t.equal(allowed, 10)
  t.ok(l.allow('rate_spike', 'crm', T0), 'another tool has its own budget')
  t.ok(l.allow('auth_failures', 'github', T0), 'another kind has its own budget')
  t.same(l.takeSummaries(T0 + 30_000), [], 'no summary before the window ends')
  t.equal(l.nextDue(), T0 + MIN)
  const [s, ...rest] = l.takeSummaries(T0 + MIN)
  t.same(rest, [])
  t.same(s, { kind: 'rate_spike', tool: 'github', suppressed: 99_990, detail: '99990 more rate_spike anomalies suppressed in 60s (rate limit 10 per 60s)' })
  t.ok(l.allow('rate_spike', 'github', T0 + MIN + 1), 'the next window starts fresh')
  t.equal(l.nextDue(), undefined)
  // Forced (on close): a window still open is summarised too.
  for (let i = 0; i < 20; i++) l.allow('new_endpoint', null, T0 + 2 * MIN)
  t.equal(l.takeSummaries(T0 + 2 * MIN, true)[0]!.suppressed, 10)
})

t.test('config: every detector on by default, each can be tuned or disabled, unknown keys rejected', async (t) => {
  const defaults = anomalyConfig.parse(undefined)
  t.equal(defaults.new_endpoint.learning_window, 10 * MIN)
  t.equal(defaults.rate_spike.factor, 5)
  t.equal(defaults.rate_spike.min_count, 100)
  t.equal(defaults.auth_failures.threshold, 10)
  t.same(anomalyRateLimit(defaults), { max: 10, windowMs: MIN })
  t.same(createDetectors(defaults).map((d) => d.kind),
    ['unmatched_destination', 'unexpected_credential', 'method_denied', 'credential_echoed', 'new_endpoint', 'rate_spike', 'auth_failures'])
  const tuned = anomalyConfig.parse({ new_endpoint: { learning_window: '1h' }, auth_failures: { enabled: false }, rate_spike: { enabled: false } })
  t.equal(tuned.new_endpoint.learning_window, 3_600_000)
  t.same(createDetectors(tuned).map((d) => d.kind), ['unmatched_destination', 'unexpected_credential', 'method_denied', 'credential_echoed', 'new_endpoint'])
  t.notOk(anomalyConfig.safeParse({ new_endpoint: { learn: '1h' } }).success, 'unknown key')
  t.notOk(anomalyConfig.safeParse({ rate_spike: { factor: 0.5 } }).success, 'factor must exceed 1')
  t.notOk(anomalyConfig.safeParse({ rate_limit: { window: 'soon' } }).success, 'bad duration')
  // The section is the one the main schema uses.
  const full = configSchema.parse({ instance_id: 'i', issuers: {}, tools: {}, anomaly: { method_denied: { enabled: false } } })
  t.equal(full.anomaly.method_denied.enabled, false)
  t.equal(configSchema.parse({ instance_id: 'i', issuers: {}, tools: {} }).anomaly.unexpected_credential.enabled, true)
})
