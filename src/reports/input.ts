import { createReadStream } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { access, constants } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { createGunzip } from 'node:zlib'
import type { Readable } from 'node:stream'
import { escapeAllControl } from '../audit/log.js'
import type { Io } from '../util/io.js'

/**
 * Reading audit trails, for every `sidekey audit …` verb: lines from files, `.gz` files or stdin, streamed one at
 * a time (memory stays flat however long the trail), parsed leniently. A trail is untrusted input that may be cut
 * mid-line, mixed with other programs' output or from another version: nothing in it is fatal, and what was skipped
 * is counted so the reports can say so.
 *
 * @example
 *   const input = new AuditInput()
 *   for await (const rec of input.records(readLines(files, process.stdin))) use(rec)
 *   process.stderr.write(describeSkipped(input.counts))
 */

/** One audit line as parsed: a JSON object with a string `event`. Fields are unchecked: test their types. */
export type AuditRecord = Record<string, unknown> & { event: string }

export interface InputCounts {
  /** Lines read (blank ones included). */
  lines: number
  /** Audit events (JSON objects with a string `event`). */
  events: number
  /** Other JSON log lines (no `event`): sidekey's own operational logs, or another program's. */
  other: number
  /** Lines that were not JSON objects: the sum of the three below. */
  skipped: number
  /** A JSON object cut short (a line beginning `{` that does not parse): a tail cut off, a write torn. */
  truncated: number
  /** Not JSON at all (plain text, a stack trace). */
  not_json: number
  /** JSON, but not an object (an array, a string, a number), or longer than any audit line. */
  foreign: number
  /** Lines that end with sidekey's seal (`run_id`, `seq`, `chain`). */
  sealed: number
  /**
   * Audit events without a seal in a trail that has seals: left out of every report (sidekey seals every line it
   * writes, so someone else wrote them). Not in `events`.
   */
  unsealed: number
  /**
   * Unsealed events counted anyway: read before the trail's first sealed line, beyond what can be held back
   * (HOLD_BYTES). Zero unless a sealed trail is preceded by that many unsealed lines.
   */
  unsealed_counted: number
}

/** No audit line comes near this; a longer line is not read into an object. */
export const MAX_LINE = 1 << 20
/** Unsealed event lines held back until the trail shows whether it is sealed: at most this many bytes of them. */
export const HOLD_BYTES = 16 << 20
/** The seal a chained sidekey ends every line with (src/audit/trail/chain.ts); looked for in a line's last bytes. */
const SEAL = /,"run_id":"[A-Za-z0-9_-]{1,64}","seq":[1-9][0-9]{0,15},"chain":"[A-Za-z0-9_-]{43}"\}\s*$/
const SEAL_TAIL = 160

export const isSealed = (line: string): boolean => SEAL.test(line.length > SEAL_TAIL ? line.slice(-SEAL_TAIL) : line)

export class AuditInput {
  readonly counts: InputCounts = {
    lines: 0,
    events: 0,
    other: 0,
    skipped: 0,
    truncated: 0,
    not_json: 0,
    foreign: 0,
    sealed: 0,
    unsealed: 0,
    unsealed_counted: 0,
  }

  /**
   * The audit records among `lines`; every other line is counted. In a trail that has sealed lines, an event
   * without a seal is left out and counted (`unsealed`): sidekey seals every line, so whoever could write the log
   * added it. One pass: unsealed events are held back (their text, up to HOLD_BYTES) until the first sealed line
   * (then they are left out) or the end (a trail with no seal at all, from a sidekey without the chain: yielded).
   */
  async * records (lines: AsyncIterable<string> | Iterable<string>): AsyncIterable<AuditRecord> {
    const c = this.counts
    let held: string[] = []
    let heldBytes = 0
    for await (const line of lines) {
      c.lines++
      const rec = this.parse(line)
      if (rec === undefined) continue
      if (isSealed(line)) {
        c.sealed++
        c.unsealed += held.length
        held = []
      } else if (typeof rec.event === 'string') {
        if (c.sealed > 0) { c.unsealed++; continue }
        if (heldBytes + line.length <= HOLD_BYTES) {
          held.push(line)
          heldBytes += line.length
          continue
        }
        // More than can be held back before any seal: counted, and said so if seals come later.
        for (const h of held) yield * this.#counted(h)
        held = []
        heldBytes = Infinity
        c.unsealed_counted++
      }
      if (typeof rec.event !== 'string') {
        c.other++
        continue
      }
      c.events++
      yield rec as AuditRecord
    }
    for (const h of held) yield * this.#counted(h)
    if (c.sealed === 0) c.unsealed_counted = 0
  }

  * #counted (line: string): Iterable<AuditRecord> {
    this.counts.unsealed_counted++
    this.counts.events++
    yield JSON.parse(line) as AuditRecord
  }

  /** One line: an object, or undefined (counted as skipped unless blank). */
  parse (line: string): Record<string, unknown> | undefined {
    const c = this.counts
    const start = line.trimStart()
    if (start === '') return undefined
    if (line.length > MAX_LINE) { c.skipped++; c.foreign++; return undefined }
    let v: unknown
    try {
      v = JSON.parse(line)
    } catch {
      c.skipped++
      if (start[0] === '{') c.truncated++
      else c.not_json++
      return undefined
    }
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
    c.skipped++
    c.foreign++
    return undefined
  }
}

/** `3 lines skipped (1 truncated, 1 not JSON, 1 foreign JSON)`, or '' when none was. */
export function describeSkipped (c: InputCounts): string {
  if (c.skipped === 0) return ''
  const parts = ([['truncated', c.truncated], ['not JSON', c.not_json], ['foreign JSON', c.foreign]] as const)
    .filter(([, n]) => n > 0).map(([what, n]) => `${n} ${what}`)
  return `${c.skipped} line${c.skipped === 1 ? '' : 's'} skipped (${parts.join(', ')})`
}

/**
 * What a report says about unsealed events it left out (or counted, read before the first seal), or '' when none.
 * It goes wherever the report names its input, so a reader of the report sees it.
 */
export function describeUnsealed (c: Pick<InputCounts, 'unsealed' | 'unsealed_counted'>): string {
  const out: string[] = []
  if (c.unsealed > 0) {
    out.push(`${c.unsealed} event${c.unsealed === 1 ? '' : 's'} without a seal left out ` +
      '(sidekey seals every line: someone else wrote them; sidekey audit verify names them)')
  }
  if (c.unsealed_counted > 0) {
    out.push(`${c.unsealed_counted} event${c.unsealed_counted === 1 ? '' : 's'} without a seal, ` +
      'read before the trail\'s first sealed line, were counted: verify the trail')
  }
  return out.join('; ')
}

/** Milliseconds since the epoch from an ISO string or a number; undefined when neither. */
export function parseTime (v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v !== 'string') return undefined
  const ms = Date.parse(v)
  return Number.isNaN(ms) ? undefined : ms
}

export const str = (v: unknown): string | undefined => typeof v === 'string' ? v : undefined

/** Every line of every file in order; `-` is stdin, `.gz` is gunzipped. */
export async function * readLines (files: readonly string[], stdin: NodeJS.ReadableStream): AsyncIterable<string> {
  for (const f of files) {
    let input: NodeJS.ReadableStream
    if (f === '-') input = stdin
    else {
      const file: Readable = createReadStream(f)
      input = f.endsWith('.gz') ? file.pipe(createGunzip()) : file
      if (f.endsWith('.gz')) file.on('error', (err) => (input as Readable).destroy(err))
    }
    const rl = createInterface({ input, crlfDelay: Infinity })
    try {
      yield * rl
    } finally {
      rl.close()
    }
  }
}

/** What an audit verb reads and writes: files or stdin in, the report and its problems out. */
export type AuditIo = Pick<Io, 'stdin' | 'stdout' | 'stderr'>

/** Text from the log shown to a human: every control character made visible (the log is untrusted input). */
export function esc (s: string): string { return escapeAllControl(s) }

/**
 * The files of an audit verb, checked before any is read: none means stdin; stdin at most once; each readable.
 * Returns an exit code when the verb must stop (1 unreadable, 2 usage), else undefined.
 */
export async function checkInputs (
  verb: string, files: string[], usage: string, io: AuditIo
): Promise<number | undefined> {
  if (files.length === 0) files.push('-')
  if (files.filter((f) => f === '-').length > 1) {
    io.stderr.write(`${verb}: stdin (-) given more than once\n${usage}`)
    return 2
  }
  for (const f of files) {
    if (f === '-') continue
    try {
      await access(f, constants.R_OK)
    } catch (err) {
      io.stderr.write(`${verb}: cannot read ${esc(f)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}\n`)
      return 1
    }
  }
  return undefined
}

/** A read that failed midway (a corrupt .gz, an I/O error) as one line and exit code 1. */
export function readFailed (verb: string, err: unknown, io: AuditIo): number {
  io.stderr.write(`${verb}: read failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`)
  return 1
}

export type VerbArgs = { values: Record<string, string | boolean | undefined>, files: string[] }

/** A report verb's options and files; a number is the exit code to stop with (0 after --help, 2 on bad usage). */
export function parseVerbArgs (
  verb: string, usage: string, args: string[], options: NonNullable<ParseArgsConfig['options']>, io: AuditIo
): VerbArgs | number {
  let parsed: { values: Record<string, string | boolean | undefined | Array<string | boolean>>, positionals: string[] }
  try {
    const withHelp = { ...options, help: { type: 'boolean', short: 'h' } } as const
    parsed = parseArgs({ args, options: withHelp, allowPositionals: true, strict: true })
  } catch (err) {
    io.stderr.write(`${verb}: ${(err as Error).message}\n${usage}`)
    return 2
  }
  if (parsed.values.help === true) { io.stdout.write(usage); return 0 }
  return { values: parsed.values as VerbArgs['values'], files: parsed.positionals }
}

/**
 * Feeds every audit record of `files` (stdin when none) to `sink`; returns what was read, or the exit code to stop
 * with (1: a file unreadable or a read failed midway, 2: bad usage).
 */
export async function readRecords (
  verb: string, usage: string, files: string[], io: AuditIo, sink: (rec: AuditRecord) => void
): Promise<InputCounts | number> {
  const stop = await checkInputs(verb, files, usage, io)
  if (stop !== undefined) return stop
  const input = new AuditInput()
  try {
    for await (const rec of input.records(readLines(files, io.stdin))) sink(rec)
  } catch (err) {
    return readFailed(verb, err, io)
  }
  return input.counts
}
