import type { Counter } from 'prom-client'
import type { HistogramCells } from './tool-histogram.js'

/** A counter's pre-created series: the hot path increments `value`; the scrape copies it into the Counter. */
export interface Slot { readonly labels: Record<string, string | number>, value: number }

export interface ToolSlots {
  /** Indexed by METHODS position; each maps a status code to its slot (created on first sight, ≤ 501 codes). */
  readonly requests: Array<Map<number, Slot>>
  readonly duration: HistogramCells
  readonly overhead: HistogramCells
  readonly refreshSuccess: Slot
  readonly refreshFailure: Slot
}

export function emitSlots (counter: Counter<string>, slots: Iterable<Slot>): void {
  counter.reset()
  for (const s of slots) counter.inc(s.labels, s.value)
}
