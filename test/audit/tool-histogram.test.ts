import t from 'tap'
import { Histogram, Registry } from 'prom-client'
import { ToolHistogram } from '../../src/metrics/tool-histogram.js'
import { DURATION_BUCKETS } from '../../src/metrics/series.js'

const NAME = 'sidekey_request_duration_seconds'
const HELP = 'The whole proxied exchange'

t.test('a ToolHistogram scrapes as the prom-client Histogram it replaces, observation for observation', async (t) => {
  const theirs = new Registry()
  const ours = new Registry()
  const buckets = [...DURATION_BUCKETS]
  const reference = new Histogram({ name: NAME, help: HELP, labelNames: ['tool'], buckets, registers: [theirs] })
  const histogram = new ToolHistogram({ name: NAME, help: HELP, buckets: DURATION_BUCKETS, registers: [ours] })
  // On a bound, between bounds, above the last, zero; a tool with no observation has no series.
  const seen: Array<[string, number]> = [
    ['github', 0.025], ['slack', 0.0031], ['github', 61], ['github', 0], ['slack', 1e-9],
  ]
  histogram.cells('idle')
  for (const [tool, value] of seen) {
    reference.labels({ tool }).observe(value)
    histogram.cells(tool).observe(value)
  }
  const text = await ours.metrics()
  t.equal(text, await theirs.metrics())
  t.match(text, /sidekey_request_duration_seconds_bucket\{le="0\.025",tool="github"\} 2\n/)
  t.match(text, /sidekey_request_duration_seconds_bucket\{le="\+Inf",tool="github"\} 3\n/)
  t.notMatch(text, /idle/)
  t.throws(() => histogram.cells('github').observe(Number.NaN), TypeError, 'as prom-client refuses it')
  theirs.resetMetrics()
  ours.resetMetrics()
  t.equal(await ours.metrics(), await theirs.metrics(), 'reset: no series until the next observation')
})
