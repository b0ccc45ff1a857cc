/** What the trail verifier is told (its options) and what it answers (per run, and for the whole input). */

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
