import t from 'tap'
import { AuditHub, type AuditMetrics } from '../../src/audit/hub.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { anomalyConfig, createDetectors, type Detector } from '../../src/anomaly/index.js'
import type { AuditEvent } from '../../src/audit/events.js'
import { ManualClock, denied, memoryLogger, used } from './helpers.js'

function setup (opts: { detectors?: Detector[], maxQueue?: number, clock?: ManualClock } = {}) {
  const log = memoryLogger()
  const metrics = createMetrics({ tools: ['github', 'crm'], defaultMetrics: false })
  const clock = opts.clock ?? new ManualClock()
  const hub = new AuditHub({
    logger: log.logger,
    metrics,
    instanceId: 'agent-7',
    clock,
    detectors: opts.detectors ?? createDetectors(anomalyConfig.parse({})),
    maxQueue: opts.maxQueue,
  })
  return { ...log, metrics, hub, clock }
}

const anomalies = (records: Array<Record<string, unknown>>) => records.filter((r) => r.event === 'anomaly')

t.test('one JSON line per event with event, time, instance_id and the event fields', async (t) => {
  const { hub, records } = setup()
  t.teardown(() => hub.close())
  hub.emit(used({ path: '/repos/acme/app?access_token=abc#frag', request_id: 'r1' }))
  hub.emit({ event: 'credential.issued', tool: 'github', issuer: 'local', credential_id: 'c1', issued_at: '2026-01-01T00:00:00.000Z', expires_at: null, scopes: ['repo:read'] })
  hub.emit({ event: 'credential.refresh_failed', tool: 'crm', issuer: 'idp', error: 'SIDEKEY_ISSUER_TIMEOUT', attempt: 2, retry_in_ms: 1600 })
  hub.emit({ event: 'credential.revoked', tool: 'github', credential_id: 'c0' })
  hub.emit({ event: 'credential.expired', tool: 'github', credential_id: 'c0' })
  hub.emit(denied({ path: '/x?key=secret' }))
  const recs = records()
  t.equal(recs.length, 6)
  for (const r of recs) {
    t.equal(r.instance_id, 'agent-7')
    t.match(r.time, /^\d{4}-\d\d-\d\dT/)
    t.type(r.event, 'string')
  }
  t.match(recs[0], { event: 'credential.used', tool: 'github', credential_id: 'cred-1', method: 'GET', host: 'api.github.com', path: '/repos/acme/app', status: 200, duration_ms: 12, client: '127.0.0.1:50000', placeholder: 'stripped', request_id: 'r1' })
  t.match(recs[1], { event: 'credential.issued', scopes: ['repo:read'], expires_at: null })
  t.match(recs[2], { event: 'credential.refresh_failed', level: 40 }, 'refresh failures are warnings')
  t.equal(recs[5]!.path, '/x', 'egress path without query')
})

t.test('detectors run after emit returns, and their anomalies are logged and counted', async (t) => {
  const { hub, records, metrics } = setup()
  t.teardown(() => hub.close())
  hub.emit(used({ method: 'DELETE', outcome: 'method_denied', status: 403 }))
  t.equal(anomalies(records()).length, 0, 'nothing detected on the emitting call')
  await hub.settled()
  const [a] = anomalies(records())
  t.match(a, { event: 'anomaly', kind: 'method_denied', tool: 'github', instance_id: 'agent-7', level: 40 })
  t.match(await metrics.text(), 'sidekey_anomalies_total{kind="method_denied"} 1')
  await hub.settled()
})

t.test('normal traffic raises no anomaly', async (t) => {
  const { hub, records, clock } = setup()
  t.teardown(() => hub.close())
  for (let m = 0; m < 30; m++) {
    for (let i = 0; i < 30; i++) hub.emit(used({ path: `/repos/acme/app/issues/${i}`, method: i % 2 === 0 ? 'GET' : 'POST' }))
    await hub.settled()
    clock.advance(60_000)
  }
  t.same(anomalies(records()), [])
})

t.test('a full detector queue drops (and counts) instead of growing; the log line is still written', async (t) => {
  const { hub, lines, metrics } = setup({ maxQueue: 100 })
  t.teardown(() => hub.close())
  for (let i = 0; i < 1000; i++) hub.emit(used({}))
  t.equal(lines().length, 1000)
  await hub.settled()
  t.match(await metrics.text(), 'sidekey_audit_dropped_total 900')
})

t.test('a flood of anomalies is rate-limited in the log, fully counted, and summarised once', async (t) => {
  const { hub, records, metrics, clock } = setup()
  t.teardown(() => hub.close())
  for (let i = 0; i < 10_000; i++) hub.emit(used({ outcome: 'method_denied', status: 403, method: 'DELETE' }))
  await hub.settled() // the queue holds 10,000: let it drain
  for (let i = 0; i < 50; i++) hub.emit(denied({ host: `h${i}.test` }))
  await hub.settled()
  let a = anomalies(records())
  t.equal(a.filter((r) => r.kind === 'method_denied').length, 10)
  t.equal(a.filter((r) => r.kind === 'unmatched_destination').length, 10)
  t.match(await metrics.text(), 'sidekey_anomalies_total{kind="method_denied"} 10000')
  t.equal(clock.pending, 1, 'one timer for the summaries')
  clock.advance(60_000)
  a = anomalies(records()).filter((r) => r.suppressed !== undefined)
  t.same(a.map((r) => [r.kind, r.tool, r.suppressed]).sort(), [['method_denied', 'github', 9990], ['unmatched_destination', null, 40]])
  t.equal(clock.pending, 0)
  // The next window logs again.
  hub.emit(used({ outcome: 'method_denied', status: 403 }))
  await hub.settled()
  t.equal(anomalies(records()).filter((r) => r.kind === 'method_denied' && r.suppressed === undefined).length, 11)
})

t.test('anomaly events emitted directly are counted and rate-limited like detected ones', async (t) => {
  const { hub, records, metrics } = setup({ detectors: [] })
  t.teardown(() => hub.close())
  for (let i = 0; i < 15; i++) hub.emit({ event: 'anomaly', kind: 'unexpected_credential', tool: 'crm', detail: 'x' })
  t.equal(anomalies(records()).length, 10)
  t.match(await metrics.text(), 'sidekey_anomalies_total{kind="unexpected_credential"} 15')
  hub.close()
  t.equal(anomalies(records()).at(-1)!.suppressed, 5, 'close writes pending summaries')
})

t.test('emit never throws: failing metrics, detectors and logger are absorbed', async (t) => {
  const log = memoryLogger()
  let errors = 0
  const badMetrics: AuditMetrics = { observe () { throw new Error('metrics') }, dropped () {}, error () { errors++ } }
  const badDetector: Detector = { kind: 'rate_spike', observe () { throw new Error('detector') } }
  const hub = new AuditHub({ logger: log.logger, metrics: badMetrics, instanceId: 'i', detectors: [badDetector] })
  t.teardown(() => hub.close())
  t.doesNotThrow(() => hub.emit(used({})))
  t.doesNotThrow(() => hub.emit({ event: 'anomaly', kind: 'rate_spike', tool: null, detail: 'x' }))
  await hub.settled()
  t.ok(errors >= 2)
  const throwing = { child: () => ({ info () { throw new Error('log') }, warn () { throw new Error('log') } }) }
  const metrics = createMetrics({ tools: [], defaultMetrics: false })
  const hub2 = new AuditHub({ logger: throwing as never, metrics, instanceId: 'i' })
  t.doesNotThrow(() => hub2.emit(used({})))
  t.match(await metrics.text(), 'sidekey_audit_errors_total 1')
  hub2.close()
})

t.test('emit after close still logs and counts, without detection or timers', async (t) => {
  const { hub, records, metrics, clock } = setup()
  hub.emit(used({ outcome: 'method_denied', status: 403 }))
  hub.close()
  t.equal(anomalies(records()).length, 1, 'close ran the queued events through the detectors')
  hub.close()
  t.doesNotThrow(() => hub.emit(used({ outcome: 'method_denied', status: 403 })))
  await hub.settled()
  t.equal(anomalies(records()).length, 1)
  t.equal(records().filter((r) => r.event === 'credential.used').length, 2)
  t.match(await metrics.text(), 'sidekey_requests_total{tool="github",method="GET",code="403"} 2')
  t.equal(clock.pending, 0)
})

t.test('setDetectors swaps the detector set on reload', async (t) => {
  const { hub, records } = setup({ detectors: [] })
  t.teardown(() => hub.close())
  hub.emit(used({ outcome: 'method_denied', status: 403 }))
  await hub.settled()
  t.equal(anomalies(records()).length, 0)
  hub.setDetectors(createDetectors(anomalyConfig.parse({})), { max: 1, windowMs: 1000 })
  hub.emit(used({ outcome: 'method_denied', status: 403 }))
  hub.emit(used({ outcome: 'method_denied', status: 403 }))
  await hub.settled()
  t.equal(anomalies(records()).length, 1, 'the new rate limit applies')
})

t.test('a canary credential in any field that could carry it never reaches the log or the metrics', async (t) => {
  const canary = 'sk-canaryZ9x8c7v6b5n4m3l2k1j0'
  const forms = [canary, encodeURIComponent(canary), Buffer.from(canary).toString('base64'), Buffer.from(canary).toString('base64url')]
  const { hub, text, metrics, clock } = setup()
  t.teardown(() => hub.close())
  const events: AuditEvent[] = [
    used({ path: `/v1/chat?api_key=${canary}` }),
    used({ path: `/v1/keys/${canary}/usage`, placeholder: 'unexpected' }),
    used({ path: `/v1/keys/${canary}`, outcome: 'method_denied', status: 403, method: 'DELETE' }),
    used({ path: `/v1/${encodeURIComponent(canary)}?token=${encodeURIComponent(canary)}`, status: 401 }),
    denied({ path: `/steal?access_token=${canary}`, method: 'GET' }),
    { ...used({}), headers: { authorization: `Bearer ${canary}` }, token: canary, url: `https://x.test/?key=${canary}` } as unknown as AuditEvent,
  ]
  clock.advance(11 * 60_000) // past new_endpoint's learning window for anything not yet seen
  for (let round = 0; round < 20; round++) for (const e of events) hub.emit(e)
  await hub.settled()
  hub.close()
  const out = text() + await metrics.text()
  for (const f of forms) t.notOk(out.includes(f), `no trace of ${f.slice(0, 8)}…`)
  t.match(text(), /"kind":"unexpected_credential"/, 'the anomalies were logged, without the canary')
})
