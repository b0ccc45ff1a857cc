import type { CheckpointClaims } from '../../audit/trail/key.js'
import type { Problem, ProblemKind, PublicJwk, RunSummary } from './types.js'

/** One run as the verifier follows it, line by line, and what is reported of it. */

export interface Run {
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

export function newRun (runId: string, order: number): Run {
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

export function problem (run: Run, seq: number, kind: ProblemKind, message: string): void {
  run.problem ??= { run_id: run.runId, instance_id: run.instanceId, seq, kind, message }
}

export function summary (r: Run): RunSummary {
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
