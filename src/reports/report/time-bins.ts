import type { Series } from './charts.js'

const MAX_BINS = 240
const MAX_SERIES = 12
const OTHER = '(other)'

/** Counts per time bin and series; the bin width doubles whenever the span would need more than MAX_BINS bins. */
export class TimeBins {
  width: number
  readonly #bins = new Map<number, Map<string, number>>()
  readonly totals = new Map<string, number>()
  #min = Infinity
  #max = -Infinity

  constructor (width = 60_000) { this.width = width }

  add (time: number, series: string, n = 1): void {
    const name = this.totals.has(series) || this.totals.size < MAX_SERIES ? series : OTHER
    this.totals.set(name, (this.totals.get(name) ?? 0) + n)
    let b = Math.floor(time / this.width)
    while (Math.max(this.#max, b) - Math.min(this.#min, b) >= MAX_BINS) {
      this.#rebin()
      b = Math.floor(time / this.width)
    }
    if (b < this.#min) this.#min = b
    if (b > this.#max) this.#max = b
    let m = this.#bins.get(b)
    if (m === undefined) this.#bins.set(b, m = new Map())
    m.set(name, (m.get(name) ?? 0) + n)
  }

  #rebin (): void {
    const old = [...this.#bins]
    this.#bins.clear()
    this.width *= 2
    this.#min = Infinity
    this.#max = -Infinity
    for (const [b, m] of old) {
      const nb = Math.floor(b / 2)
      if (nb < this.#min) this.#min = nb
      if (nb > this.#max) this.#max = nb
      let into = this.#bins.get(nb)
      if (into === undefined) this.#bins.set(nb, into = new Map())
      for (const [k, v] of m) into.set(k, (into.get(k) ?? 0) + v)
    }
  }

  get empty (): boolean { return this.#bins.size === 0 }

  /** Contiguous bins from the first to the last, one value array per series (largest total first). */
  series (): { start: number, width: number, series: Series[] } {
    if (this.empty) return { start: 0, width: this.width, series: [] }
    const names = [...this.totals].sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).map(([n]) => n)
    const n = this.#max - this.#min + 1
    const series = names.map((name) => {
      const values = new Array<number>(n).fill(0)
      for (const [b, m] of this.#bins) values[b - this.#min] = m.get(name) ?? 0
      return { name, values }
    })
    return { start: this.#min * this.width, width: this.width, series }
  }
}
