import type { VerifyResult } from './types.js'

/** The verifier's answer as text, for people. */

/** What exit 3 prints: the chain holds, but nothing from outside the trail vouched for its keys. */
export const NOT_AUTHENTICATED = 'consistent, not authenticated: pass --keys, --fleet or --from'

/**
 * The human answer: one headline (`N events in R runs, M checkpoints, intact`, or `…: consistent, not
 * authenticated…`, or `…: NOT INTACT …`), then problems, unsealed lines, skips and notes.
 */
export function formatVerifyResult (r: VerifyResult, esc: (s: string) => string = (s) => s): string {
  const head = `${r.events} events in ${r.runs} run${r.runs === 1 ? '' : 's'}, ` +
    `${r.checkpoints} checkpoint${r.checkpoints === 1 ? '' : 's'}`
  const out: string[] = []
  const u = r.unsealed
  if (r.intact) out.push(`${head}, intact`)
  else if (r.consistent) out.push(`${head}: ${NOT_AUTHENTICATED}`)
  else if (r.events === 0 && u.count === 0) out.push('no audit events in the input: nothing was verified: NOT INTACT')
  else {
    const failed = [
      r.problems.length > 0 || u.count === 0 ? plural(r.problems.length, 'run') + ' failed' : '',
      u.count > 0 ? plural(u.count, 'line') + ' without a seal' : '',
    ]
    out.push(`${head}: NOT INTACT (${failed.filter((f) => f !== '').join(', ')})`)
    for (const p of r.problems) {
      const where = `run ${esc(p.run_id)} (instance ${esc(p.instance_id ?? '?')}) seq ${p.seq}`
      out.push(`  ${where}: ${p.kind}: ${esc(p.message)}`)
    }
    const why = r.runs === 0
      ? 'no line of the input is sealed: the trail cannot be verified (written without the chain, or not by sidekey)'
      : 'no run_id/seq/chain: not written by sidekey\'s chain, so added by whoever could write the log'
    for (const l of u.first) out.push(`  ${esc(l.at)}: ${esc(l.event)} without a seal: ${why}`)
    if (u.count > u.first.length) out.push(`  … and ${u.count - u.first.length} more lines without a seal`)
  }
  const s = r.skipped
  if (s.total > 0) {
    const parts = ([
      ['truncated', s.truncated],
      ['not JSON', s.not_json],
      ['foreign JSON', s.foreign],
      ['sidekey lines without a chain (older version), not verified', s.unchained],
      ['longer than 1 MiB', s.too_long],
      ['exact duplicates', s.duplicates],
    ] as const)
      .filter(([, n]) => n > 0).map(([what, n]) => `${n} ${what}`)
    out.push(`skipped ${s.total} line${s.total === 1 ? '' : 's'}: ${parts.join(', ')}`)
  }
  for (const n of r.notes) out.push(esc(n))
  return out.join('\n') + '\n'
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`
