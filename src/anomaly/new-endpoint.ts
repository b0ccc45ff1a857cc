import type { AuditEvent } from '../audit/events.js'
import { MAX_TRACKED_TOOLS, type AnomalyFinding, type Detector } from './detector.js'
import { pathShape } from '../secrets/path-shape.js'

export interface NewEndpointOptions {
  /** Milliseconds from a tool's first use during which endpoints are learned silently. */
  learningWindowMs: number
  /** Shapes remembered per tool. */
  maxShapes: number
}

interface ToolState { readonly firstSeen: number, readonly shapes: Set<string>, full: boolean }

/** Paths whose shape is remembered: an agent calls few paths over and over; past this the memo starts afresh. */
const SHAPES_KEPT = 1024

/**
 * A method + path shape not seen for a tool during its learning window: scope creep, or an agent probing.
 * Each new shape is reported once, then learned. Only requests that reached the upstream count (a refused one
 * is its own anomaly or none).
 */
export class NewEndpointDetector implements Detector {
  readonly kind = 'new_endpoint' as const
  readonly #opts: NewEndpointOptions
  readonly #tools = new Map<string, ToolState>()
  /** Path → shape: pathShape runs a few regular expressions per segment, on every call otherwise. */
  readonly #shapeOf = new Map<string, string>()

  constructor (opts: NewEndpointOptions) { this.#opts = opts }

  observe (event: AuditEvent, now: number): AnomalyFinding | undefined {
    if (event.event !== 'credential.used' || event.outcome !== undefined) return undefined
    let state = this.#tools.get(event.tool)
    if (state === undefined) {
      if (this.#tools.size >= MAX_TRACKED_TOOLS) return undefined
      state = { firstSeen: now, shapes: new Set(), full: false }
      this.#tools.set(event.tool, state)
    }
    const key = `${event.method} ${this.#shape(event.path)}`
    if (state.shapes.has(key)) return undefined
    if (state.shapes.size >= this.#opts.maxShapes) {
      if (state.full) return undefined
      state.full = true
      const detail = `more than ${this.#opts.maxShapes} endpoint shapes; ` +
        'new endpoints are no longer tracked for this tool'
      return { kind: this.kind, tool: event.tool, detail }
    }
    state.shapes.add(key)
    if (now - state.firstSeen <= this.#opts.learningWindowMs) return undefined
    return { kind: this.kind, tool: event.tool, detail: `${key} not seen during the learning window` }
  }

  #shape (path: string): string {
    let shape = this.#shapeOf.get(path)
    if (shape === undefined) {
      shape = pathShape(path)
      if (this.#shapeOf.size >= SHAPES_KEPT) this.#shapeOf.clear()
      this.#shapeOf.set(path, shape)
    }
    return shape
  }
}
