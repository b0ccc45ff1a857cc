import { open } from 'node:fs/promises'
import {
  AuditInput, checkInputs, esc, parseVerbArgs, readFailed, readLines, type AuditIo,
} from '../input.js'
import { ScopeUsage, loadConfigOrReport, sinceWindow } from '../scopes.js'
import { readKeys } from '../verify/command.js'
import type { PublicJwk } from '../verify/types.js'
import { TrailVerifier } from '../verify/verify.js'
import { ReportBuilder } from './builder.js'
import { html } from './charts.js'
import { renderReport } from './render.js'
import { REPORT_USAGE as USAGE } from '../usage.js'

/**
 * `sidekey audit report --out report.html FILE…`: one self-contained HTML page (no script, no network, charts as
 * inline SVG) over audit trails: credential age at use per tool (a histogram), uses per tool and instance over
 * time, status codes, what was refused (destinations, calls, admin requests), anomalies on a timeline beside a table
 * of the latest, refresh failures on a timeline, the scope recommendations, and when the trail
 * has them the inventory, the tasks and the `verify` result. One streaming pass; every aggregate is bounded
 * (fixed age bins, at most MAX_BINS time bins, at most MAX_SERIES series), so memory and page size stay flat
 * however many events there are.
 */

const VERB = 'sidekey audit report'

/** Exit codes: 0 written, 1 a file could not be read or written, 2 bad usage or config. */
export async function reportCommand (args: string[], io: AuditIo): Promise<number> {
  const parsed = parseVerbArgs(VERB, USAGE, args, {
    out: { type: 'string', short: 'o' },
    config: { type: 'string', short: 'c' },
    since: { type: 'string' },
    keys: { type: 'string', multiple: true },
    live: { type: 'boolean' },
  }, io)
  if (typeof parsed === 'number') return parsed
  const { values, files } = parsed
  if (typeof values.out !== 'string') { io.stderr.write(`${VERB}: --out FILE is required\n${USAGE}`); return 2 }
  const window = sinceWindow(typeof values.since === 'string' ? values.since : 'all')
  if (window === null) {
    io.stderr.write(`${VERB}: --since expects a duration like 30d or 12h, or all\n${USAGE}`)
    return 2
  }
  const config = typeof values.config === 'string' ? await loadConfigOrReport(values.config, VERB, io) : undefined
  if (typeof values.config === 'string' && config === undefined) return 2
  let keys: PublicJwk[] | undefined
  for (const file of (values.keys as unknown as string[] | undefined) ?? []) {
    const loaded = await readKeys(file)
    if (typeof loaded === 'string') { io.stderr.write(`${VERB}: --keys ${esc(file)}: ${loaded}\n`); return 2 }
    keys = [...(keys ?? []), ...loaded]
  }
  const live = values.live === true
  const stop = await checkInputs(VERB, files, USAGE, io)
  if (stop !== undefined) return stop
  const started = performance.now()
  const input = new AuditInput()
  const builder = new ReportBuilder(new ScopeUsage(window))
  const verifier = new TrailVerifier({ ...(keys === undefined ? {} : { keys }), live })
  try {
    const lines = tee(readLines(files, io.stdin), (line) => verifier.line(line))
    for await (const rec of input.records(lines)) builder.add(rec)
  } catch (err) {
    return readFailed(VERB, err, io)
  }
  const page = renderReport(builder.finish(input.counts, config, verifier.finish(), live))
  try {
    const fh = await open(values.out, 'w', 0o644)
    try { await fh.writeFile(page) } finally { await fh.close() }
  } catch (err) {
    io.stderr.write(`${VERB}: cannot write ${html(values.out)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}\n`)
    return 1
  }
  const ms = Math.round(performance.now() - started)
  const bytes = Buffer.byteLength(page)
  io.stderr.write(`${VERB}: ${input.counts.events} events, ${bytes} bytes written to ${values.out} in ${ms} ms\n`)
  return 0
}

async function * tee (lines: AsyncIterable<string>, also: (line: string) => void): AsyncIterable<string> {
  for await (const line of lines) {
    also(line)
    yield line
  }
}
