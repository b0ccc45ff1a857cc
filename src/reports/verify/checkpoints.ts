import { verifyCheckpoint, type CheckpointClaims } from '../../audit/trail/key.js'
import { problem, type Run } from './run.js'

/** What a run's checkpoints must show: signed by the run's key over its chain, and the chain the next run names. */

const RECENT_CHECKPOINTS = 8

export function checkpoint (run: Run, seq: number, chainBefore: string, rec: Record<string, unknown>): void {
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
export function checkNamed (run: Run, next: Run): void {
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

/** A checkpoint JWS's claims, read without checking its signature (a key checks it before they count). */
export function unverifiedClaims (jws: string): CheckpointClaims | undefined {
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
