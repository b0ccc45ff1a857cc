import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { CA_CERT_FILE, CA_ISSUER_FILE } from '../../src/tls/ca.js'
import { startSidekey } from '../helpers/sidekey.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { ANOMALY_KINDS, UNMATCHED_TOOL, codeLabel, methodLabel } from '../../src/metrics/labels.js'
import { METRIC_NAMES, REMOVED_DEFAULT_METRICS } from '../../src/metrics/series.js'
import type { ToolCredentialStatus } from '../../src/credentials/provider.js'
import { ManualClock, denied, used } from './helpers.js'

function status (over: Partial<ToolCredentialStatus>): ToolCredentialStatus {
  return {
    issuer: 'local',
    credential_id: 'c1',
    issued_at: null,
    expires_at: null,
    age_seconds: 30,
    expires_in_seconds: 570,
    shared_with: [],
    last_refresh: null,
    next_refresh_at: null,
    ...over,
  }
}

/** The sample lines of one metric: `name{labels} value`. */
function samples (text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' '))
}

t.test('every documented metric is exposed with its labels', async (t) => {
  const m = createMetrics({ tools: ['github', 'crm'] })
  m.bindCredentials({
    status: () => ({ github: status({}), crm: status({ credential_id: null, age_seconds: null, expires_in_seconds: null }) }),
    unready: () => ['crm'],
  })
  m.observe(used({ status: 200, duration_ms: 25, overhead_ms: 0.3 }))
  m.observe(used({ tool: 'crm', method: 'POST', status: 503, outcome: 'credential_unavailable' }))
  m.observe({ event: 'credential.issued', tool: 'github', issuer: 'local', credential_id: 'c1', issued_at: '', expires_at: null, scopes: [] })
  m.observe({ event: 'credential.refresh_failed', tool: 'crm', issuer: 'idp', error: 'SIDEKEY_ISSUER_FAILED', attempt: 1, retry_in_ms: 1000 })
  m.observe({ event: 'anomaly', kind: 'new_endpoint', tool: 'github', detail: 'x' })
  m.observe(denied({ reason: 'no_tool' }))
  const text = await m.text()
  t.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8')

  t.same(samples(text, 'sidekey_requests_total').sort(), [
    'sidekey_requests_total{tool="crm",method="POST",code="503"} 1',
    'sidekey_requests_total{tool="github",method="GET",code="200"} 1',
  ])
  t.match(text, /sidekey_request_duration_seconds_bucket\{le="0\.025",tool="github"\} 1/)
  t.match(text, /sidekey_request_duration_seconds_count\{tool="github"\} 1/)
  t.match(text, /sidekey_proxy_overhead_seconds_bucket\{le="0\.0005",tool="github"\} 1/)
  t.same(samples(text, 'sidekey_credential_age_seconds'), ['sidekey_credential_age_seconds{tool="github"} 30'], 'no series without a credential')
  t.same(samples(text, 'sidekey_credential_expires_in_seconds'), ['sidekey_credential_expires_in_seconds{tool="github"} 570'])
  t.same(samples(text, 'sidekey_credential_refresh_total').sort(), [
    'sidekey_credential_refresh_total{tool="crm",result="failure"} 1',
    'sidekey_credential_refresh_total{tool="crm",result="success"} 0',
    'sidekey_credential_refresh_total{tool="github",result="failure"} 0',
    'sidekey_credential_refresh_total{tool="github",result="success"} 1',
  ], 'both results of every configured tool exist from the start, so alerts see the first failure')
  t.ok(samples(text, 'sidekey_anomalies_total').includes('sidekey_anomalies_total{kind="new_endpoint"} 1'))
  t.equal(samples(text, 'sidekey_anomalies_total').length, ANOMALY_KINDS.length, 'every kind pre-created at 0')
  t.same(samples(text, 'sidekey_egress_denied_total'), ['sidekey_egress_denied_total 1'], 'one series, no labels, as documented')
  t.ok(samples(text, 'sidekey_egress_denied_by_reason_total').includes('sidekey_egress_denied_by_reason_total{reason="no_tool"} 1'))
  t.same(samples(text, 'sidekey_tool_ready').sort(), ['sidekey_tool_ready{tool="crm"} 0', 'sidekey_tool_ready{tool="github"} 1'])
  t.same(samples(text, 'sidekey_tools'), ['sidekey_tools 2'])
  t.match(text, /^process_cpu_user_seconds_total /m, 'default process metrics')
  t.match(text, /^nodejs_eventloop_lag_seconds /m)
  for (const name of METRIC_NAMES.filter((n) => !n.startsWith('sidekey_fleet_'))) t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} declared`)
  t.notMatch(text, /sidekey_fleet_/, 'no fleet series without a fleet: section (the disconnection alert cannot fire)')
  const fleet = { connected: false }
  m.bindFleet(fleet)
  m.bindFleet(fleet)
  m.observe({ event: 'fleet.command', result: 'applied', action: 'lock', lag_ms: 120 })
  m.observe({ event: 'fleet.command', result: 'rejected', action: 'forged-action', error: 'unknown_key' })
  const withFleet = await m.text()
  for (const name of METRIC_NAMES) t.match(withFleet, new RegExp(`^# TYPE ${name} `, 'm'), `${name} declared`)
  t.same(samples(withFleet, 'sidekey_fleet_connected'), ['sidekey_fleet_connected 0'])
  t.same(samples(withFleet, 'sidekey_fleet_commands_total').sort(), [
    'sidekey_fleet_commands_total{action="lock",result="applied"} 1',
    'sidekey_fleet_commands_total{action="unknown",result="rejected"} 1',
  ], 'an unverified action is never a label value')
  t.match(withFleet, /sidekey_fleet_apply_seconds_bucket\{le="0\.25"\} 1/)
})

t.test('a shared credential counts its refresh for every tool sharing it', async (t) => {
  const m = createMetrics({ tools: ['a', 'b', 'c'], defaultMetrics: false })
  m.observe({ event: 'credential.issued', tool: 'a', issuer: 'i', credential_id: 'x', issued_at: '', expires_at: null, scopes: [], shared_with: ['b', 'c'] })
  m.observe({ event: 'credential.refresh_failed', tool: 'a', issuer: 'i', error: 'E', attempt: 1, retry_in_ms: 1, shared_with: ['b'] })
  const text = await m.text()
  for (const tool of ['a', 'b', 'c']) t.match(text, `sidekey_credential_refresh_total{tool="${tool}",result="success"} 1`)
  t.match(text, 'sidekey_credential_refresh_total{tool="b",result="failure"} 1')
  t.match(text, 'sidekey_credential_refresh_total{tool="c",result="failure"} 0')
})

t.test('label values stay bounded: 10,000 paths and 1,000 hosts add no series', async (t) => {
  const m = createMetrics({ tools: ['github'], defaultMetrics: false })
  const weird = ['get', 'PROPFIND', 'BREW', 'X'.repeat(100)]
  for (let i = 0; i < 10_000; i++) {
    m.observe(used({
      tool: i % 3 === 0 ? `tool-${i}` : 'github',
      method: i % 7 === 0 ? weird[i % weird.length]! : 'GET',
      host: `h${i % 1000}.example.test`,
      path: `/items/${i}?q=${i}`,
      status: i % 11 === 0 ? 1000 + i : 200,
      credential_id: `cred-${i}`,
    }))
    if (i % 10 === 0) m.observe(denied({ host: `h${i % 1000}.test`, reason: `weird reason ${i}` }))
    if (i % 10 === 0) m.observe({ event: 'credential.issued', tool: `ghost-${i}`, issuer: 'i', credential_id: `c${i}`, issued_at: '', expires_at: null, scopes: [] })
  }
  const text = await m.text()
  const series = text.split('\n').filter((l) => l.startsWith('sidekey_'))
  const tools = new Set(series.flatMap((l) => [...l.matchAll(/tool="([^"]*)"/g)].map((x) => x[1])))
  t.same([...tools].sort(), ['_unmatched', 'github'], 'unknown tools fold to _unmatched')
  const methods = new Set(samples(text, 'sidekey_requests_total').map((l) => /method="([^"]*)"/.exec(l)![1]))
  t.same([...methods].sort(), ['GET', 'OTHER'])
  const codes = new Set(samples(text, 'sidekey_requests_total').map((l) => /code="([^"]*)"/.exec(l)![1]))
  t.same([...codes].sort(), ['0', '200'], 'out-of-range statuses are 0')
  t.notMatch(text, /example\.test|\/items\/|cred-\d|weird/, 'no host, path, id or free text as a label')
  t.same(samples(text, 'sidekey_egress_denied_total'), ['sidekey_egress_denied_total 1000'])
  t.ok(samples(text, 'sidekey_egress_denied_by_reason_total').includes('sidekey_egress_denied_by_reason_total{reason="other"} 1000'))
  t.ok(series.length < 150, `series count bounded (${series.length})`)
})

t.test('label helpers fold to fixed sets', async (t) => {
  t.equal(methodLabel('PATCH'), 'PATCH')
  t.equal(methodLabel('patch'), 'OTHER')
  t.equal(codeLabel(404), 404)
  t.equal(codeLabel(0), 0)
  t.equal(codeLabel(99), 0)
  t.equal(codeLabel(200.5), 0)
})

t.test('two instances in one process keep separate registries', async (t) => {
  const a = createMetrics({ tools: ['x'] })
  const b = createMetrics({ tools: ['x'] })
  a.observe(used({ tool: 'x' }))
  t.match(await a.text(), 'sidekey_requests_total{tool="x",method="GET",code="200"} 1')
  t.equal(samples(await b.text(), 'sidekey_requests_total').length, 0)
})

t.test('setTools on reload adds tools and keeps counters', async (t) => {
  const m = createMetrics({ tools: ['a'], defaultMetrics: false })
  m.observe(used({ tool: 'a' }))
  m.observe(used({ tool: 'b' }))
  m.setTools(['b'])
  m.observe(used({ tool: 'b' }))
  const text = await m.text()
  t.match(text, 'sidekey_requests_total{tool="a",method="GET",code="200"} 1')
  t.match(text, 'sidekey_requests_total{tool="_unmatched",method="GET",code="200"} 1')
  t.match(text, 'sidekey_requests_total{tool="b",method="GET",code="200"} 1')
  t.match(text, 'sidekey_tools 1')
  t.equal(UNMATCHED_TOOL, '_unmatched')
})

t.test('a failing credential provider costs the gauges, not the scrape', async (t) => {
  const m = createMetrics({ tools: ['a'], defaultMetrics: false })
  m.bindCredentials({ status: () => { throw new Error('boom') }, unready: () => { throw new Error('boom') } })
  m.dropped(3)
  m.error()
  const text = await m.text()
  t.equal(samples(text, 'sidekey_credential_age_seconds').length, 0)
  t.equal(samples(text, 'sidekey_tool_ready').length, 0)
  t.match(text, 'sidekey_audit_dropped_total 3')
  t.match(text, 'sidekey_audit_errors_total 1')
})

t.test('egress denials: one unlabelled documented counter plus a by-reason breakdown that sums to it', async (t) => {
  const m = createMetrics({ tools: ['a'], defaultMetrics: false })
  for (const reason of ['no_tool', 'no_tool', 'port', 'private_address', 'something new']) m.observe(denied({ reason }))
  const text = await m.text()
  t.match(text, /^# TYPE sidekey_egress_denied_total counter$/m)
  t.same(samples(text, 'sidekey_egress_denied_total'), ['sidekey_egress_denied_total 5'])
  const byReason = samples(text, 'sidekey_egress_denied_by_reason_total')
  t.ok(byReason.includes('sidekey_egress_denied_by_reason_total{reason="no_tool"} 2'))
  t.ok(byReason.includes('sidekey_egress_denied_by_reason_total{reason="port"} 1'))
  t.ok(byReason.includes('sidekey_egress_denied_by_reason_total{reason="other"} 1'))
  t.equal(byReason.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0), 5, 'the breakdown adds up to the total')
})

/** `name -> type` from the `# TYPE` lines of an exposition. */
function types (text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => [x[1]!, x[2]!]))
}

t.test('default metrics: the gauges promtool rejects are gone, their per-type siblings stay', async (t) => {
  const m = createMetrics({ tools: ['a'] })
  const text = await m.text()
  const declared = types(text)
  t.equal(REMOVED_DEFAULT_METRICS.length, 3)
  for (const name of REMOVED_DEFAULT_METRICS) t.notOk(declared.has(name), `${name} removed`)
  for (const name of ['nodejs_active_handles', 'nodejs_active_requests', 'nodejs_active_resources']) t.equal(declared.get(name), 'gauge', `${name}{type} kept`)
  // promtool's own rule, so the lint holds even where promtool is not installed (promtool.test.ts runs the real one).
  for (const [name, type] of declared) {
    t.equal(name.endsWith('_total'), type === 'counter', `${name} (${type}): only counters end in _total`)
  }
})

t.test('the CA gauge counts down to the CA\'s notAfter on the bound clock and goes negative once it has passed', async (t) => {
  const m = createMetrics({ tools: ['a'], defaultMetrics: false })
  t.match(await m.text(), /^# TYPE sidekey_ca_expires_in_seconds gauge$/m)
  t.same(samples(await m.text(), 'sidekey_ca_expires_in_seconds'), [], 'no CA bound: no sample (not a 0 that reads as expired)')

  const clock = new ManualClock()
  m.bindCa({ notAfter: new Date(clock.now() + 3 * 86_400_000 + 500) }, clock)
  t.same(samples(await m.text(), 'sidekey_ca_expires_in_seconds'), ['sidekey_ca_expires_in_seconds 259200'], 'whole seconds, rounded down')
  clock.advance(86_400_000)
  t.same(samples(await m.text(), 'sidekey_ca_expires_in_seconds'), ['sidekey_ca_expires_in_seconds 172800'], 'read at scrape time')
  clock.advance(2 * 86_400_000 + 60_500)
  t.same(samples(await m.text(), 'sidekey_ca_expires_in_seconds'), ['sidekey_ca_expires_in_seconds -60'], 'expired: negative, so <= 0 alerts')
  m.bindCa({ notAfter: new Date(Number.NaN) }, clock)
  t.same(samples(await m.text(), 'sidekey_ca_expires_in_seconds'), [], 'an unusable date costs the sample, not the scrape')
})

t.test('a running sidekey exposes the time left on the CA it created, as its certificates say', async (t) => {
  const sk = await startSidekey(t, `
instance_id: ca-gauge-test
ca: { dir: {{CA_DIR}}, validity: 10d }
issuers: { local: { type: local_jwt, ttl: 10m } }
tools:
  api: { match: { host: api.tool.test }, issuer: local }
`)
  const res = await request(`${sk.adminUrl}/metrics`)
  const text = await res.body.text()
  t.equal(res.statusCode, 200)
  const lines = samples(text, 'sidekey_ca_expires_in_seconds')
  t.equal(lines.length, 1, 'one unlabelled series')
  const value = Number(lines[0]?.split(' ')[1])
  // The CA's end is the earlier notAfter of the anchor agents trust and the issuing CA that signs leaves.
  const certs = await Promise.all([CA_CERT_FILE, CA_ISSUER_FILE].map(async (f) => new X509Certificate(await readFile(join(sk.caDir, f)))))
  const left = (Math.min(...certs.map((c) => Date.parse(c.validTo))) - Date.now()) / 1000
  t.ok(Number.isInteger(value), `an integer (${lines[0]})`)
  // validTo has whole seconds and the scrape came before Date.now() above: within a few seconds above, an hour below.
  t.ok(value <= left + 2 && value >= left - 3600, `${value}s is the certificates' remaining ${Math.round(left)}s`)
  t.ok(value > 9 * 86_400 && value <= 10 * 86_400, 'about the configured ca.validity of a fresh CA')
})
