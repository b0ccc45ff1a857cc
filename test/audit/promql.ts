import { parser } from '@prometheus-io/lezer-promql'

/** Grafana's template variables, replaced by values of the same PromQL type so the expression parses. */
const GRAFANA_VARS: ReadonlyArray<[RegExp, string]> = [
  [/\$__(rate_)?interval\b|\$__range\b/g, '5m'],
  [/\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?/g, 'x'],
]

export interface ParsedPromql {
  /** Where the parser gave up: empty when the expression is valid PromQL. */
  readonly errors: string[]
  /** Every metric name a selector reads, histogram suffixes kept. */
  readonly metrics: string[]
}

/**
 * Parses one PromQL expression with Prometheus's own grammar (@prometheus-io/lezer-promql), so an alert or panel
 * that promtool would reject fails on a machine without promtool too.
 */
export function parsePromql (expr: string): ParsedPromql {
  let text = expr
  for (const [re, value] of GRAFANA_VARS) text = text.replace(re, value)
  const errors: string[] = []
  const metrics: string[] = []
  parser.parse(text).iterate({
    enter (node) {
      if (node.type.isError) errors.push(`syntax error at ${node.from}: ${JSON.stringify(text.slice(Math.max(0, node.from - 20), node.from + 20))}`)
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') metrics.push(text.slice(node.from, node.to))
    },
  })
  return { errors, metrics }
}

/** A metric name reduced to the family metrics.ts declares (`_bucket`, `_sum`, `_count` are a histogram's series). */
export function metricFamily (name: string): string {
  return name.replace(/_(bucket|sum|count)$/, '')
}

/** Every `expr` (alert rules, Grafana targets) and `definition` (Grafana variables) string in a parsed document. */
export function exprsOf (node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) exprsOf(n, out)
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v)
      else exprsOf(v, out)
    }
  }
  return out
}
