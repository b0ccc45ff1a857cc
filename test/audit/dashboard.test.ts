import t from 'tap'
import { readFile } from 'node:fs/promises'
import { parse } from 'yaml'
import { METRIC_NAMES, createMetrics } from '../../src/audit/metrics.js'

const deploy = new URL('../../deploy/', import.meta.url)

/** sidekey_* series a PromQL expression reads, with histogram suffixes reduced to the metric name. */
function seriesIn (expr: string): string[] {
  return [...expr.matchAll(/\bsidekey_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))
}

function exprsOf (node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) exprsOf(n, out)
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v)
      else exprsOf(v, out)
    }
  }
  return out
}

t.test('the Grafana dashboard parses and queries only metrics sidekey exports', async (t) => {
  const dash = JSON.parse(await readFile(new URL('grafana/sidekey.json', deploy), 'utf8')) as { title: string, panels: Array<{ title: string }> }
  t.equal(dash.title, 'sidekey')
  const exprs = exprsOf(dash)
  t.ok(exprs.length >= 10)
  const used = new Set(exprs.flatMap(seriesIn))
  for (const name of used) t.ok(METRIC_NAMES.includes(name), `${name} is declared in metrics.ts`)
  for (const want of ['sidekey_credential_age_seconds', 'sidekey_credential_expires_in_seconds', 'sidekey_credential_refresh_total', 'sidekey_requests_total', 'sidekey_anomalies_total']) {
    t.ok(used.has(want), `the dashboard shows ${want}`)
  }
  // And the registry really exposes them (METRIC_NAMES cannot drift from the code).
  const text = await createMetrics({ tools: ['x'], defaultMetrics: false }).text()
  for (const name of METRIC_NAMES) t.match(text, new RegExp(`^# TYPE ${name} `, 'm'))
})

t.test('the alert rules query only metrics sidekey exports', async (t) => {
  const rules = parse(await readFile(new URL('prometheus/alerts.yaml', deploy), 'utf8')) as unknown
  const exprs = exprsOf(rules)
  t.equal(exprs.length, 8)
  for (const name of new Set(exprs.flatMap(seriesIn))) t.ok(METRIC_NAMES.includes(name), `${name} is declared in metrics.ts`)
})
