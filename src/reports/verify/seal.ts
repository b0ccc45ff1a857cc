import { createHash } from 'node:crypto'
import { CHAIN_LENGTH, SEAL_SUFFIX_LENGTH } from '../../audit/trail/chain.js'

/** The seal ending each chained line (`…,"run_id","seq","chain"}`), read from the bytes without parsing the JSON. */

const SEAL_KEY = Buffer.from(',"chain":"')
const RUN_KEY = Buffer.from(',"run_id":"')
const SEQ_KEY = Buffer.from('","seq":')
const CLOSE = Buffer.from('}')

export interface Sealed { runId: string, seq: number, chain: string, unsealedEnd: number }

/**
 * `…,"run_id":"R","seq":N,"chain":"C"}` at the end of the line, found from the end without parsing the JSON.
 * `unsealedEnd` is where `,"chain"` begins: the hashed bytes are those before it, then `}`.
 */
export function parseSeal (b: Buffer): Sealed | undefined {
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
export function sealedBy (previous: string | undefined, bytes: Buffer, s: Sealed): boolean {
  if (previous === undefined) return false
  const chain = createHash('sha256').update(previous).update(bytes.subarray(0, s.unsealedEnd)).update(CLOSE)
  return chain.digest('base64url') === s.chain
}

export function parseObject (b: Buffer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(b.toString('utf8'))
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

export function firstNonBlank (b: Buffer): number {
  let i = 0
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x09)) i++
  return i
}

export function isBlank (b: Buffer): boolean {
  return firstNonBlank(b) === b.length
}
