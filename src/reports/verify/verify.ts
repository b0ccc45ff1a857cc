import { verifyCheckpoint, type CheckpointClaims } from '../../audit/trail/key.js'
import { TRAIL_FORMAT } from '../../audit/trail/trail.js'
import { checkNamed, checkpoint, unverifiedClaims } from './checkpoints.js'
import { MAX_LINE } from './read.js'
import { newRun, problem, summary, type Run } from './run.js'
import { firstNonBlank, isBlank, parseObject, parseSeal, sealedBy, type Sealed } from './seal.js'
import type { PublicJwk, SkipCounts, VerifyOptions, VerifyResult } from './types.js'

/**
 * Verifies sidekey audit trails (trail/chain.ts, trail/key.ts) as a stream: lines in any order of instances and
 * runs (a collector's merge), one pass, memory flat in the length of the trail (a few hundred bytes per run).
 * Lines are taken as bytes when given as bytes (exact), or as strings (re-encoded UTF-8, exact for what sidekey
 * writes). Nothing in the input is fatal: what is not a chained sidekey line is counted and skipped.
 *
 * For every run (by `run_id`) it checks, in order: seq follows seq; each line hashes to its chain; each
 * `audit.checkpoint` is signed by the run's key (from `audit.started`, or from `keys`) over the chain as the
 * verifier computed it; the run ends with its final (shutdown) checkpoint; and the previous run named in
 * `audit.started` is in the input and reaches that checkpoint. The first failure of each run is reported with
 * its seq and what it looks like.
 *
 * @example
 *   const result = await verifyTrail(readLineBytes(files, process.stdin))
 *   process.stdout.write(formatVerifyResult(result))
 *   // or, beside other consumers of the same lines:
 *   const v = new TrailVerifier(); for (const l of lines) v.line(l); const result = v.finish()
 */

const MAX_RUNS = 100_000
const MAX_RUN_DETAILS = 1000
const MAX_UNSEALED_SHOWN = 20
const RECENT = 32
const EVENT_KEY = Buffer.from('"event":"')
const AUDIT_EVENT = Buffer.from('"event":"audit.')
const INSTANCE_KEY = Buffer.from('"instance_id":"')

export class TrailVerifier {
  readonly #opts: VerifyOptions
  readonly #runs = new Map<string, Run>()
  readonly #skipped: SkipCounts =
    { total: 0, truncated: 0, not_json: 0, foreign: 0, unchained: 0, too_long: 0, duplicates: 0 }

  readonly #notes: string[] = []
  #order = 0
  #tooManyRuns = 0
  #lineNo = 0
  readonly #unsealedEvents: VerifyResult['unsealed'] = { count: 0, first: [] }
  /** Published checkpoints by instance (its key must have signed it) and by run (the run must reach it). */
  readonly #anchorsByInstance = new Map<string, string>()
  readonly #anchorsByRun = new Map<string, CheckpointClaims>()

  constructor (opts: VerifyOptions = {}) {
    this.#opts = opts
    for (const a of opts.anchors ?? []) {
      const claims = unverifiedClaims(a.jws)
      if (claims === undefined) continue
      // Nothing here is trusted yet: a run's key must verify the JWS before its claims count (#started).
      this.#anchorsByInstance.set(claims.iss, a.jws)
      this.#anchorsByRun.set(claims.run_id, claims)
    }
  }

  /** Lines given so far, blank ones included: the number of the last line. */
  get linesRead (): number { return this.#lineNo }

  /** One line, without its newline (a trailing CR is ignored). */
  line (input: Uint8Array | string): void {
    this.#lineNo++
    let bytes = typeof input === 'string'
      ? Buffer.from(input)
      : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
    if (bytes.length > 0 && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, -1)
    if (bytes.length === 0 || isBlank(bytes)) return
    if (bytes.length > MAX_LINE) { this.#skip('too_long'); return }
    const sealed = parseSeal(bytes)
    if (sealed === undefined) { this.#unsealed(bytes); return }
    let run = this.#runs.get(sealed.runId)
    if (run === undefined) {
      if (this.#runs.size >= MAX_RUNS) { this.#tooManyRuns++; this.#skip('foreign'); return }
      run = newRun(sealed.runId, this.#order++)
      this.#runs.set(sealed.runId, run)
    }
    this.#sealedLine(run, sealed, bytes)
  }

  finish (): VerifyResult {
    const runs = [...this.#runs.values()]
    const named = new Map<string, Run>()
    for (const r of runs) if (r.previous !== undefined) named.set(r.previous.run_id, r)
    const earliest = new Map<string, number>()
    for (const r of runs) {
      const inst = r.instanceId ?? ''
      if (!earliest.has(inst) || earliest.get(inst)! > r.order) earliest.set(inst, r.order)
    }
    let pendingOpen = 0
    for (const r of runs) {
      const next = named.get(r.runId)
      if (next !== undefined) checkNamed(r, next)
      if (r.previous !== undefined && !this.#runs.has(r.previous.run_id) && r.problem === undefined) {
        if (earliest.get(r.instanceId ?? '') === r.order) {
          this.#notes.push(`run ${r.runId} (instance ${r.instanceId ?? '?'}) continues run ${r.previous.run_id} ` +
            `(checkpointed to seq ${r.previous.seq}), which is not in the input`)
        } else {
          problem(r, 1, 'removed', `the previous run ${r.previous.run_id} named by this run's audit.started ` +
            `(checkpointed to seq ${r.previous.seq}) is missing from the input, while earlier runs of the instance ` +
            'are there')
        }
      }
      const anchor = this.#anchorsByRun.get(r.runId)
      if (anchor !== undefined && !r.anchored && r.problem === undefined && r.lastSeq < anchor.seq) {
        if (this.#opts.live === true && next === undefined) {
          this.#notes.push(`run ${r.runId} (instance ${r.instanceId ?? '?'}) is checkpointed in the fleet bucket to ` +
            `seq ${anchor.seq}; the input ends at seq ${r.lastSeq} (--live: not yet arrived)`)
        } else {
          problem(r, r.lastSeq + 1, 'tail', `the fleet bucket holds this run's checkpoint of seq ${anchor.seq}, ` +
            `but the input ends at seq ${r.lastSeq}: its tail was cut`)
        }
      }
      if (r.problem === undefined && !r.closed) {
        const open = this.#opts.live === true && next === undefined
        const cp = r.lastCheckpoint
        const after = cp === undefined ? r.lastSeq : r.lastSeq - cp.line
        if (open) pendingOpen += after
        else if (cp === undefined) {
          problem(r, r.firstSeq, 'tail', `no checkpoint vouches for any of the run's ${r.lines} lines: it ended ` +
            'without its shutdown checkpoint (killed, crashed, cut short, or still running: see --live)')
        } else if (after > 0) {
          problem(r, cp.line + 1, 'tail', `${after} line${after === 1 ? '' : 's'} after the last checkpoint ` +
            `(seq ${cp.line}) cannot be vouched for: the run ended without its shutdown checkpoint ` +
            '(killed, crashed, its tail cut, or still running: see --live)')
        } else {
          problem(r, cp.line + 1, 'tail', `the run ends on a periodic checkpoint (seq ${cp.line}) without its ` +
            'shutdown checkpoint: lines after it may have been cut (or the run was killed, or is still running: ' +
            'see --live)')
        }
      }
    }
    if (pendingOpen > 0) {
      this.#notes.push(`${pendingOpen} line${pendingOpen === 1 ? '' : 's'} of runs still open (--live) follow ` +
        'their last checkpoint: not yet vouched for')
    }
    if (this.#tooManyRuns > 0) {
      this.#notes.push(`${this.#tooManyRuns} lines of runs beyond the first ${MAX_RUNS} were skipped`)
    }
    const problems = runs.flatMap((r) => r.problem === undefined ? [] : [{ ...r.problem, instance_id: r.instanceId }])
    const unvouched = runs.filter((r) => r.problem === undefined && r.trust !== 'keys' && r.trust !== 'fleet')
    if (this.#opts.keys === undefined && this.#opts.anchors === undefined && runs.length > 0) {
      this.#notes.push('keys: only the trail\'s own (each run\'s audit.started): a trail rewritten and re-signed ' +
        'with another key looks the same; pass --keys (GET /audit-key of each instance), --fleet or --from')
    } else {
      for (const r of unvouched.slice(0, 20)) {
        this.#notes.push(`run ${r.runId} (instance ${r.instanceId ?? '?'}): not authenticated: its key is not ` +
          'among --keys and its instance published no checkpoint in the fleet bucket')
      }
      if (unvouched.length > 20) this.#notes.push(`… and ${unvouched.length - 20} more runs not authenticated`)
    }
    const unsealed = { count: this.#unsealedEvents.count, first: [...this.#unsealedEvents.first] }
    const events = sum(runs, (r) => r.events)
    const consistent = problems.length === 0 && unsealed.count === 0 && events > 0
    const authenticated = runs.length > 0 && unvouched.length === 0
    return {
      intact: consistent && authenticated,
      consistent,
      authenticated,
      unsealed,
      events,
      lines: sum(runs, (r) => r.lines),
      runs: runs.length,
      checkpoints: sum(runs, (r) => r.checkpoints),
      trust: this.#opts.keys === undefined
        ? (this.#opts.anchors === undefined ? 'first-use' : 'fleet')
        : (this.#opts.anchors === undefined ? 'keys' : 'keys+fleet'),
      skipped: { ...this.#skipped },
      problems,
      notes: [...this.#notes],
      run_details: runs.slice(0, MAX_RUN_DETAILS).map(summary),
    }
  }

  #skip (kind: Exclude<keyof SkipCounts, 'total'>): void {
    this.#skipped.total++
    this.#skipped[kind]++
  }

  /** A line without a well-formed seal: someone else's, an older sidekey's, or a sealed line damaged in its tail. */
  #unsealed (bytes: Buffer): void {
    let v: unknown
    try {
      v = JSON.parse(bytes.toString('utf8'))
    } catch {
      this.#skip(bytes[firstNonBlank(bytes)] === 0x7b ? 'truncated' : 'not_json')
      return
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) { this.#skip('foreign'); return }
    const rec = v as Record<string, unknown>
    const run = typeof rec.run_id === 'string' ? this.#runs.get(rec.run_id) : undefined
    if (run !== undefined && typeof rec.seq === 'number') {
      // Its seal was edited: the line is the run's, so this is where the run breaks.
      run.lines++
      if (run.problem === undefined) {
        if (rec.seq === run.expected) {
          problem(run, rec.seq, 'altered',
            `line seq ${rec.seq} was altered: its run_id/seq/chain ending is not as sidekey writes it`)
        } else this.#seqOutOfPlace(run, rec.seq)
      }
      return
    }
    if (typeof rec.event === 'string') {
      // An event no seal vouches for: appended by whoever can write the log, so it fails the trail.
      const u = this.#unsealedEvents
      if (u.count++ < MAX_UNSEALED_SHOWN) {
        u.first.push({ at: this.#opts.locate?.(this.#lineNo) ?? `line ${this.#lineNo}`, event: rec.event })
      }
      return
    }
    this.#skip(typeof rec.level === 'number' && typeof rec.time === 'string' ? 'unchained' : 'foreign')
  }

  #sealedLine (run: Run, s: Sealed, bytes: Buffer): void {
    run.lines++
    const isEvent = bytes.indexOf(EVENT_KEY) !== -1
    if (isEvent) run.events++
    const isAudit = isEvent && bytes.indexOf(AUDIT_EVENT) !== -1
    let rec: Record<string, unknown> | undefined
    if (isAudit || (run.instanceId === null && bytes.indexOf(INSTANCE_KEY) !== -1)) {
      rec = parseObject(bytes)
      if (run.instanceId === null && typeof rec?.instance_id === 'string') run.instanceId = rec.instance_id
    }
    if (rec?.event === 'audit.checkpoint') run.checkpoints++
    if (run.problem !== undefined) {
      if (run.problem.kind === 'removed' && run.gap !== undefined && s.seq >= run.gap.from && s.seq <= run.gap.to) {
        run.problem.kind = 'reordered'
        run.problem.message = `line seq ${s.seq} appears after seq ${run.gap.to + 1}: lines were reordered`
        run.gap = undefined
      }
      return
    }
    if (s.seq !== run.expected) {
      const before = s.seq === 1 ? '' : run.recent.get(s.seq - 1)
      if (s.seq < run.expected && run.recent.get(s.seq) === s.chain && sealedBy(before, bytes, s)) {
        run.lines--
        if (isEvent) run.events--
        if (rec?.event === 'audit.checkpoint') run.checkpoints--
        this.#skip('duplicates')
        return
      }
      this.#seqOutOfPlace(run, s.seq)
      return
    }
    const previousChain = run.prev
    if (!sealedBy(previousChain, bytes, s)) {
      problem(run, s.seq, 'altered', `line seq ${s.seq} was altered: its bytes do not hash to its chain`)
      return
    }
    if (run.closed) {
      problem(run, s.seq, 'inserted',
        `line seq ${s.seq} follows the run's shutdown checkpoint: nothing is written after it, so it was added`)
      return
    }
    if (run.firstSeq === 0) run.firstSeq = s.seq
    run.lastSeq = s.seq
    run.expected = s.seq + 1
    run.prev = s.chain
    run.recent.set(s.seq, s.chain)
    if (run.recent.size > RECENT) run.recent.delete(s.seq - RECENT)
    const anchor = this.#anchorsByRun.get(run.runId)
    if (anchor?.seq === s.seq) {
      if (anchor.chain !== s.chain) {
        problem(run, s.seq, 'rewritten', 'the checkpoint its instance published off the node (fleet bucket) has ' +
          `another chain at seq ${s.seq}: the run was rewritten`)
        return
      }
      run.anchored = true
    }
    if (rec?.event === 'audit.started') this.#started(run, s.seq, rec)
    else if (rec?.event === 'audit.checkpoint') checkpoint(run, s.seq, previousChain, rec)
  }

  /** A seq other than the next one: a gap (removed, unless it turns up later: reordered) or one seen before. */
  #seqOutOfPlace (run: Run, seq: number): void {
    if (seq > run.expected) {
      const from = run.expected
      const to = seq - 1
      run.gap = { from, to }
      const what = from === to ? `line seq ${from} is missing` : `lines seq ${from}–${to} are missing`
      if (run.firstSeq === 0) {
        problem(run, from, 'removed', `${what}: the run's head is not in the input (the first line read is seq ${seq})`)
      } else problem(run, from, 'removed', `${what} (seq ${from - 1} is followed by seq ${seq}): removed`)
    } else {
      problem(run, seq, 'inserted', `line seq ${seq} appears again after seq ${run.expected - 1}, with other bytes: ` +
        'a line was inserted, replayed or moved')
    }
  }

  #started (run: Run, seq: number, rec: Record<string, unknown>): void {
    if (rec.format !== TRAIL_FORMAT) {
      problem(run, seq, 'format', `audit.started says format ${JSON.stringify(rec.format)}, which this verifier ` +
        `does not know (it checks ${TRAIL_FORMAT}): the run is not verified`)
      return
    }
    const key = rec.key as PublicJwk | undefined
    if (key === undefined || key === null || typeof key !== 'object' || typeof key.x !== 'string') {
      problem(run, seq, 'key', 'audit.started carries no usable key')
      return
    }
    if (run.started && (run.jwk?.x !== key.x)) {
      problem(run, seq, 'key', 'a second audit.started in the run names another key')
      return
    }
    run.started = true
    const instance = typeof rec.instance_id === 'string' ? rec.instance_id : run.instanceId
    const match = this.#opts.keys?.find((k) => k.x === key.x)
    const published = instance === null ? undefined : this.#anchorsByInstance.get(instance)
    if (match !== undefined) {
      run.jwk = match
      run.trust = 'keys'
    } else if (published !== undefined) {
      // The bucket holds a checkpoint of this instance: only its real key signed it.
      if (!verifyCheckpoint(published, key).ok) {
        problem(run, seq, 'key', `instance ${instance ?? '?'}: its audit key (kid ${String(key.kid)}) did not sign ` +
          'the checkpoint the instance published in the fleet bucket: a key you do not trust signed this run')
        return
      }
      run.jwk = key
      run.trust = 'fleet'
    } else if (this.#opts.keys !== undefined && this.#opts.anchors === undefined) {
      problem(run, seq, 'key', `instance ${run.instanceId ?? '?'}: its audit key (kid ${String(key.kid)}) is not ` +
        'among --keys: a key you do not trust signed this run, or the keys are another instance\'s')
      return
    } else {
      run.jwk = key
      run.trust = 'first-use'
    }
    const previous = rec.previous as { jws?: unknown } | null | undefined
    if (previous !== null && previous !== undefined) {
      const check = typeof previous.jws === 'string'
        ? verifyCheckpoint(previous.jws, run.jwk)
        : { ok: false as const, why: 'no JWS' }
      if (!check.ok) {
        problem(run, seq, 'signature',
          `the previous run's checkpoint in audit.started does not verify with the run's key (${check.why})`)
        return
      }
      run.previous = check.claims
    }
  }
}

/** Verifies every line of `lines` (bytes or strings, without newlines). */
export async function verifyTrail (
  lines: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, opts: VerifyOptions = {}
): Promise<VerifyResult> {
  const v = new TrailVerifier(opts)
  for await (const line of lines) v.line(line)
  return v.finish()
}

const sum = (runs: Run[], f: (r: Run) => number): number => runs.reduce((a, r) => a + f(r), 0)
