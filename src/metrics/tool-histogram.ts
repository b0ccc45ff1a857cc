import type { Metric, MetricValueWithName, Registry } from 'prom-client'

/**
 * One tool's series of a {@link ToolHistogram}: bucket counts the request path adds to directly. A prom-client
 * child would build, validate and hash its label object again on every observation (about 1 µs each, two per
 * request).
 */
export class HistogramCells {
  readonly #bounds: readonly number[]
  /** Observations per bucket, not cumulative; one past the last bound for those above it. */
  readonly #counts: Float64Array
  sum = 0
  count = 0

  constructor (bounds: readonly number[]) {
    this.#bounds = bounds
    this.#counts = new Float64Array(bounds.length + 1)
  }

  observe (value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`)
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.#counts[i]!++
    this.sum += value
    this.count++
  }

  /** The cumulative count at or below each bound, as the `_bucket` series reads. */
  cumulative (): number[] {
    let total = 0
    return this.#bounds.map((_, i) => (total += this.#counts[i]!))
  }

  clear (): void {
    this.#counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}

interface HistogramData {
  name: string
  help: string
  type: string
  values: Array<MetricValueWithName<string>>
  aggregator: string
}

/**
 * A histogram labelled by tool alone, exposed through prom-client's registry exactly as a prom-client Histogram is
 * (`_bucket` with `le` first, `+Inf`, `_sum`, `_count`; a series once it has an observation).
 */
export class ToolHistogram {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #bounds: readonly number[]
  readonly #cells = new Map<string, HistogramCells>()

  constructor (opts: { name: string, help: string, buckets: readonly number[], registers: readonly Registry[] }) {
    this.name = opts.name
    this.help = opts.help
    this.#bounds = [...opts.buckets].sort((a, b) => a - b)
    for (const registry of opts.registers) registry.registerMetric(this as unknown as Metric)
  }

  /** The tool's series, created on first use. */
  cells (tool: string): HistogramCells {
    let cells = this.#cells.get(tool)
    if (cells === undefined) {
      cells = new HistogramCells(this.#bounds)
      this.#cells.set(tool, cells)
    }
    return cells
  }

  reset (): void {
    for (const cells of this.#cells.values()) cells.clear()
  }

  /** What the registry formats (prom-client's own `get()` shape). */
  async get (): Promise<HistogramData> {
    const values: Array<MetricValueWithName<string>> = []
    const bucket = `${this.name}_bucket`
    for (const [tool, cells] of this.#cells) {
      if (cells.count === 0) continue
      cells.cumulative().forEach((value, i) => {
        values.push({ labels: { le: this.#bounds[i]!, tool }, value, metricName: bucket })
      })
      values.push({ labels: { le: '+Inf', tool }, value: cells.count, metricName: bucket })
      values.push({ labels: { tool }, value: cells.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { tool }, value: cells.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}
