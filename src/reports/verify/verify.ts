import { createHash } from 'node:crypto'
import { CHAIN_LENGTH, SEAL_SUFFIX_LENGTH } from '../../audit/trail/chain.js'
import { verifyCheckpoint, type CheckpointClaims } from '../../audit/trail/key.js'
import { TRAIL_FORMAT } from '../../audit/trail/trail.js'
import { MAX_LINE } from './read.js'

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

export interface PublicJwk { kty?: unknown, crv?: unknown, x?: unknown, kid?: unknown }

export interface VerifyOptions {
  /**
   * The audit keys the runs must be signed with (GET /audit-key of each instance). Without them each run's own
   * `audit.started` key is trusted on first use, which catches edits but not a trail rewritten and re-signed
   * end to end with a new key.
   */
  keys?: readonly PublicJwk[]
  /**
   * The latest checkpoint each instance published off the node (the fleet bucket's `checkpoint.<instance>`), as
   * its compact JWS. A run whose key signed its instance's checkpoint is authenticated by it; the run it names
   * must reach that seq with that chain. An instance with none here is not authenticated (unless by `keys`).
   */
  anchors?: ReadonlyArray<{ jws: string }>
  /**
   * The trail is still being written: a run that no later run names as its previous may end after its last
   * checkpoint (its pending lines are reported, not failed).
   */
  live?: boolean
  /** How to name input line `n` (1-based, blank lines counted) in a message; `line n` by default. */
  locate?: (n: number) => string
}

export type ProblemKind =
  /** A line's bytes do not hash to its chain. */
  | 'altered'
  /** Lines missing inside a run (a seq gap), at its head, or a whole run. */
  | 'removed'
  /** A line that does not belong where it is: a seq seen before, or a line after the final checkpoint. */
  | 'inserted'
  /** A missing seq that turns up later. */
  | 'reordered'
  /** A checkpoint whose signature does not verify with the run's key. */
  | 'signature'
  /** A checkpoint whose signed chain is not the chain of the lines before it: lines changed and re-chained. */
  | 'rewritten'
  /** Lines after the last checkpoint that no signature vouches for, or a run cut short. */
  | 'tail'
  /** No key, a key not in `keys`, a key changed mid-run. */
  | 'key'
  /** A format this verifier does not know. */
  | 'format'

export interface Problem {
  run_id: string
  instance_id: string | null
  /** The first seq that cannot be vouched for. */
  seq: number
  kind: ProblemKind
  message: string
}

export interface RunSummary {
  run_id: string
  instance_id: string | null
  /**
   * The key's kid, and who vouches for it: `--keys`, the checkpoint its instance published in the fleet bucket,
   * or nobody outside the trail (trusted on first use from audit.started; `none`: no audit.started).
   */
  kid: string | null
  trust: 'keys' | 'fleet' | 'first-use' | 'none'
  first_seq: number
  last_seq: number
  lines: number
  events: number
  checkpoints: number
  /** The run ended with its shutdown checkpoint. */
  closed: boolean
  /** The run named in audit.started as the previous one, and the seq it was checkpointed to. */
  previous: { run_id: string, seq: number } | null
  /** With `live`: lines after the last checkpoint of an open run. */
  pending: number
  problem: Problem | null
}

export interface SkipCounts {
  /** Blank lines are ignored, not counted. */
  total: number
  /** A line beginning `{` that is not JSON: cut short or torn. */
  truncated: number
  not_json: number
  /** JSON that is not a sidekey line (not an object, or no sidekey fields). */
  foreign: number
  /** sidekey lines without a chain: written by a version before the chain, or with the chain switched off. */
  unchained: number
  too_long: number
  /** Exact copies of a line already read (a collector that re-sent them). */
  duplicates: number
}

/** An audit event without a seal: not written by sidekey's chain (appended by someone else, or an older sidekey). */
export interface UnsealedLine {
  /** Where it is, as `locate` names it. */
  at: string
  event: string
}

export interface VerifyResult {
  /** Consistent and authenticated: the only answer that is exit 0. */
  intact: boolean
  /** Every chain, seq and checkpoint holds, every event line is sealed, and there was at least one event. */
  consistent: boolean
  /** Every run's key (or chain head) was checked against `keys` or `anchors`, never only against the trail itself. */
  authenticated: boolean
  /** Chained lines with an `event`. */
  events: number
  /** Chained lines read. */
  lines: number
  runs: number
  checkpoints: number
  /** What the keys were checked against: nothing outside the trail (`first-use`), `--keys`, the fleet, or both. */
  trust: 'keys' | 'fleet' | 'keys+fleet' | 'first-use'
  /** Audit events without a seal: each one fails the trail. The first MAX_UNSEALED_SHOWN are named. */
  unsealed: { count: number, first: UnsealedLine[] }
  skipped: SkipCounts
  problems: Problem[]
  notes: string[]
  /** Per run, in order of first appearance; at most MAX_RUN_DETAILS (the counts above cover all). */
  run_details: RunSummary[]
}

const MAX_RUNS = 100_000
const MAX_RUN_DETAILS = 1000
const MAX_UNSEALED_SHOWN = 20
const RECENT = 32
const RECENT_CHECKPOINTS = 8
const SEAL_KEY = Buffer.from(',"chain":"')
const RUN_KEY = Buffer.from(',"run_id":"')
const SEQ_KEY = Buffer.from('","seq":')
const EVENT_KEY = Buffer.from('"event":"')
const AUDIT_EVENT = Buffer.from('"event":"audit.')
const INSTANCE_KEY = Buffer.from('"instance_id":"')
const CLOSE = Buffer.from('}')

interface Run {
  runId: string
  order: number
  instanceId: string | null
  jwk: PublicJwk | undefined
  trust: RunSummary['trust']
  started: boolean
  expected: number
  prev: string
  firstSeq: number
  lastSeq: number
  lines: number
  events: number
  checkpoints: number
  /** Seq of the last checkpoint line, and what it signed. */
  lastCheckpoint: { line: number, seq: number, chain: string } | undefined
  recentCheckpoints: Array<{ seq: number, chain: string }>
  /** Chains of the last RECENT lines by seq, to tell an exact duplicate from an insertion. */
  recent: Map<number, string>
  closed: boolean
  previous: CheckpointClaims | undefined
  gap: { from: number, to: number } | undefined
  problem: Problem | undefined
  /** The checkpoint the fleet published for this run, once the run's line at its seq had its chain. */
  anchored: boolean
}

interface Sealed { runId: string, seq: number, chain: string, unsealedEnd: number }

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
      if (next !== undefined) this.#checkNamed(r, next)
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
    else if (rec?.event === 'audit.checkpoint') this.#checkpoint(run, s.seq, previousChain, rec)
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

  #checkpoint (run: Run, seq: number, chainBefore: string, rec: Record<string, unknown>): void {
    if (run.jwk === undefined) {
      problem(run, seq, 'key',
        `checkpoint at seq ${seq} cannot be checked: the run's audit.started (its key) is not in the input`)
      return
    }
    const check = typeof rec.jws === 'string'
      ? verifyCheckpoint(rec.jws, run.jwk)
      : { ok: false as const, why: 'no JWS' }
    if (!check.ok) {
      const whose = run.trust === 'keys' ? 'key from --keys' : 'run\'s key'
      const kid = String(run.jwk.kid)
      problem(run, seq, 'signature', `checkpoint at seq ${seq}: ${check.why} with the ${whose} (kid ${kid})`)
      return
    }
    const c = check.claims
    if (c.run_id !== run.runId || c.seq !== seq - 1) {
      problem(run, seq, 'inserted',
        `checkpoint at seq ${seq} was signed for run ${c.run_id} seq ${c.seq}: it was copied here`)
      return
    }
    if (c.chain !== chainBefore) {
      const from = run.lastCheckpoint === undefined ? 1 : run.lastCheckpoint.line + 1
      problem(run, from, 'rewritten', `checkpoint at seq ${seq} signed another chain than the lines before it ` +
        `hash to: lines seq ${from}–${seq - 1} were altered, removed or inserted and the chain recomputed`)
      return
    }
    run.lastCheckpoint = { line: seq, seq: c.seq, chain: c.chain }
    run.recentCheckpoints.push({ seq: c.seq, chain: c.chain })
    if (run.recentCheckpoints.length > RECENT_CHECKPOINTS) run.recentCheckpoints.shift()
    if (c.final) run.closed = true
  }

  /** `next` names `run` as its previous run: `run` must reach the checkpoint `next` names, with that chain. */
  #checkNamed (run: Run, next: Run): void {
    const claim = next.previous!
    if (run.problem !== undefined) return
    if (claim.seq > run.lastSeq) {
      problem(run, run.lastSeq + 1, 'tail', `the next run (${next.runId}) says this run was checkpointed to ` +
        `seq ${claim.seq}, but the input ends at seq ${run.lastSeq}: its tail was cut`)
      return
    }
    const cp = run.recentCheckpoints.find((c) => c.seq === claim.seq)
    if (cp !== undefined && cp.chain !== claim.chain) {
      problem(run, claim.seq, 'rewritten', `the next run (${next.runId}) carries a checkpoint of seq ${claim.seq} ` +
        'with another chain than this run\'s lines: the run was rewritten')
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

function newRun (runId: string, order: number): Run {
  return {
    runId,
    order,
    instanceId: null,
    jwk: undefined,
    trust: 'none',
    started: false,
    expected: 1,
    prev: '',
    firstSeq: 0,
    lastSeq: 0,
    lines: 0,
    events: 0,
    checkpoints: 0,
    lastCheckpoint: undefined,
    recentCheckpoints: [],
    recent: new Map(),
    closed: false,
    previous: undefined,
    gap: undefined,
    problem: undefined,
    anchored: false,
  }
}

function problem (run: Run, seq: number, kind: ProblemKind, message: string): void {
  run.problem ??= { run_id: run.runId, instance_id: run.instanceId, seq, kind, message }
}

function summary (r: Run): RunSummary {
  return {
    run_id: r.runId,
    instance_id: r.instanceId,
    kid: typeof r.jwk?.kid === 'string' ? r.jwk.kid : null,
    trust: r.trust,
    first_seq: r.firstSeq,
    last_seq: r.lastSeq,
    lines: r.lines,
    events: r.events,
    checkpoints: r.checkpoints,
    closed: r.closed,
    previous: r.previous === undefined ? null : { run_id: r.previous.run_id, seq: r.previous.seq },
    pending: r.closed || r.problem !== undefined ? 0 : r.lastSeq - (r.lastCheckpoint?.line ?? 0),
    problem: r.problem === undefined ? null : { ...r.problem, instance_id: r.instanceId },
  }
}

const sum = (runs: Run[], f: (r: Run) => number): number => runs.reduce((a, r) => a + f(r), 0)
const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`

/** A checkpoint JWS's claims, read without checking its signature (a key checks it before they count). */
function unverifiedClaims (jws: string): CheckpointClaims | undefined {
  try {
    const payload = Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')
    const c = JSON.parse(payload) as Partial<CheckpointClaims>
    if (typeof c.iss !== 'string' || typeof c.run_id !== 'string' || typeof c.seq !== 'number' ||
      typeof c.chain !== 'string') return undefined
    const iat = typeof c.iat === 'number' ? c.iat : 0
    return { iss: c.iss, run_id: c.run_id, seq: c.seq, chain: c.chain, final: c.final === true, iat }
  } catch {
    return undefined
  }
}

/**
 * `…,"run_id":"R","seq":N,"chain":"C"}` at the end of the line, found from the end without parsing the JSON.
 * `unsealedEnd` is where `,"chain"` begins: the hashed bytes are those before it, then `}`.
 */
function parseSeal (b: Buffer): Sealed | undefined {
  const n = b.length
  if (n < SEAL_SUFFIX_LENGTH + 20 || b[n - 1] !== 0x7d || b[n - 2] !== 0x22) return undefined
  const sealAt = n - SEAL_SUFFIX_LENGTH
  if (b.compare(SEAL_KEY, 0, SEAL_KEY.length, sealAt, sealAt + SEAL_KEY.length) !== 0) return undefined
  const chain = b.toString('latin1', sealAt + SEAL_KEY.length, n - 2)
  if (chain.length !== CHAIN_LENGTH || !/^[A-Za-z0-9_-]+$/.test(chain)) return undefined
  let i = sealAt
  let seq = 0
  let digits = 0
  while (i > 0 && b[i - 1]! >= 0x30 && b[i - 1]! <= 0x39 && digits < 16) { i--; digits++ }
  if (digits === 0 || b[i] === 0x30) return undefined
  seq = Number(b.toString('latin1', i, sealAt))
  const seqKeyAt = i - SEQ_KEY.length
  if (seqKeyAt < 0 || b.compare(SEQ_KEY, 0, SEQ_KEY.length, seqKeyAt, i) !== 0) return undefined
  const runStart = b.lastIndexOf(RUN_KEY, seqKeyAt)
  if (runStart === -1 || seqKeyAt - (runStart + RUN_KEY.length) > 64) return undefined
  const runId = b.toString('latin1', runStart + RUN_KEY.length, seqKeyAt)
  if (!/^[A-Za-z0-9_-]+$/.test(runId)) return undefined
  return { runId, seq, chain, unsealedEnd: sealAt }
}

/** The line's bytes hash, after `previous`, to its chain. */
function sealedBy (previous: string | undefined, bytes: Buffer, s: Sealed): boolean {
  if (previous === undefined) return false
  const chain = createHash('sha256').update(previous).update(bytes.subarray(0, s.unsealedEnd)).update(CLOSE)
  return chain.digest('base64url') === s.chain
}

function parseObject (b: Buffer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(b.toString('utf8'))
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

function firstNonBlank (b: Buffer): number {
  let i = 0
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x09)) i++
  return i
}

function isBlank (b: Buffer): boolean {
  return firstNonBlank(b) === b.length
}
