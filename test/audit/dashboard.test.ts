import t, { type Test } from 'tap'
import { readFile } from 'node:fs/promises'
import { parse } from 'yaml'
import { createMetrics } from '../../src/metrics/metrics.js'
import { METRIC_NAMES } from '../../src/metrics/series.js'
import { exprsOf, metricFamily, parsePromql } from './promql.js'

const deploy = new URL('../../deploy/', import.meta.url)

/**
 * PromQL read by Prometheus's own grammar: every expression must parse, and every metric it reads must be one
 * sidekey exports (or a default process/nodejs metric the registry keeps). Grafana's `label_values(METRIC, LABEL)`
 * query is not PromQL: its metric argument is checked.
 */
function checkExprs (t: Test, exprs: string[]): Set<string> {
  const used = new Set<string>()
  for (const raw of exprs) {
    const labelValues = /^label_values\((.+),\s*[A-Za-z_]+\)$/.exec(raw)
    const expr = labelValues?.[1] ?? raw
    const { errors, metrics } = parsePromql(expr)
    t.same(errors, [], `parses as PromQL: ${raw}`)
    t.ok(metrics.length > 0, `reads a metric: ${raw}`)
    for (const m of metrics) used.add(metricFamily(m))
  }
  for (const name of used) t.ok(METRIC_NAMES.includes(name), `${name} is declared in metrics.ts`)
  return used
}

t.test('the PromQL checker refuses what Prometheus would', async (t) => {
  t.not(parsePromql('sum(rate(sidekey_requests_total[5m]) by (tool').errors.length, 0, 'an unclosed call')
  t.not(parsePromql('rate(sidekey_requests_total[5m]) >').errors.length, 0, 'a dangling operator')
  t.same(parsePromql('histogram_quantile(0.99, sum by (le) (rate(sidekey_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'),
    { errors: [], metrics: ['sidekey_request_duration_seconds_bucket'] }, 'Grafana variables are read as values')
  t.notOk(METRIC_NAMES.includes(metricFamily('sidekey_requests_totl')), 'a misspelt metric is not declared')
})

t.test('the Grafana dashboard parses and queries only metrics sidekey exports', async (t) => {
  const dash = JSON.parse(await readFile(new URL('grafana/sidekey.json', deploy), 'utf8')) as { title: string, panels: Array<{ title: string }> }
  t.equal(dash.title, 'sidekey')
  const exprs = exprsOf(dash)
  t.ok(exprs.length >= 10)
  const used = checkExprs(t, exprs)
  for (const want of ['sidekey_credential_age_seconds', 'sidekey_credential_expires_in_seconds', 'sidekey_credential_refresh_total', 'sidekey_requests_total', 'sidekey_anomalies_total']) {
    t.ok(used.has(want), `the dashboard shows ${want}`)
  }
  // And the registry really exposes them (METRIC_NAMES cannot drift from the code).
  const metrics = createMetrics({ tools: ['x'], defaultMetrics: false })
  metrics.bindFleet({ connected: true }) // fleet series exist only with a fleet: section
  const text = await metrics.text()
  for (const name of METRIC_NAMES) t.match(text, new RegExp(`^# TYPE ${name} `, 'm'))
})

t.test('the alert rules query only metrics sidekey exports', async (t) => {
  const rules = parse(await readFile(new URL('prometheus/alerts.yaml', deploy), 'utf8')) as unknown
  const exprs = exprsOf(rules)
  t.ok(exprs.length >= 8)
  checkExprs(t, exprs)
})
