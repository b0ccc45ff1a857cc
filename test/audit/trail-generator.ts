import { generateKeyPairSync } from 'node:crypto'
import { AuditChain, chainDigest } from '../../src/audit/trail/chain.js'
import { publicJwk, signCheckpoint, type AuditJwk, type AuditKey } from '../../src/audit/trail/key.js'
import { TRAIL_FORMAT } from '../../src/audit/trail/trail.js'

/**
 * A synthetic audit trail for the report: three instances, four tools, credentials re-issued every 30 minutes
 * (one tool lives long), calls with realistic statuses and paths, anomalies, refresh failures, tasks and inventory
 * events. Deterministic (a seeded generator), so tests can count on it; `n` is the number of lines.
 */
export function * syntheticTrail (n: number, startMs = Date.parse('2026-11-01T00:00:00Z'), stepMs = 250): Generator<string> {
  let seed = 42
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
  const instances = ['agent-a', 'agent-b', 'agent-c']
  const tools = [
    { name: 'github', host: 'api.github.com', ttl: 1800e3, paths: ['/repos/acme/widget/issues/', '/repos/acme/gadget/pulls/'] },
    { name: 'openai', host: 'api.openai.com', ttl: 1800e3, paths: ['/v1/chat/completions', '/v1/embeddings'] },
    { name: 'slack', host: 'slack.com', ttl: 43_200e3, paths: ['/api/chat.postMessage'] },
    { name: 'crm', host: 'crm.internal.example', ttl: 600e3, paths: ['/v2/contacts/'] },
  ]
  const issued = new Map<string, { id: string, at: number }>()
  let k = 0
  for (let i = 0; i < n; i++) {
    const time = startMs + i * stepMs
    const inst = instances[i % 3]!
    const base = { level: 30, time: new Date(time).toISOString(), instance_id: inst }
    const tool = tools[Math.floor(rnd() * tools.length)]!
    const key = `${inst}/${tool.name}`
    const cur = issued.get(key)
    if (cur === undefined || time - cur.at > tool.ttl / 2) {
      const id = `${tool.name}-${(k++).toString(36)}`
      issued.set(key, { id, at: time })
      yield JSON.stringify({ ...base, event: 'credential.issued', tool: tool.name, issuer: tool.name, credential_id: id, issued_at: base.time, expires_at: new Date(time + tool.ttl).toISOString(), scopes: [], reason: cur === undefined ? 'initial' : 'scheduled' })
      continue
    }
    const r = rnd()
    if (r < 0.002) {
      yield JSON.stringify({ ...base, event: 'credential.refresh_failed', tool: tool.name, issuer: tool.name, error: 'SIDEKEY_ISSUER_FAILED: token endpoint answered 503', attempt: 1, retry_in_ms: 1000 })
      continue
    }
    if (r < 0.004) {
      yield JSON.stringify({ ...base, event: 'anomaly', kind: ['new_endpoint', 'rate_spike', 'auth_failures', 'unexpected_credential'][Math.floor(rnd() * 4)], tool: tool.name, detail: 'synthetic' })
      continue
    }
    if (r < 0.01) {
      yield JSON.stringify({ ...base, event: 'egress.inventory', scheme: 'https', host: 'api.stripe.com', port: 443, method: 'GET', path: '/v1/charges', status: 200, client: '127.0.0.1:5000', request_id: `r${i}`, duration_ms: 20, credentials: [{ placement: 'authorization', name: 'authorization', scheme: 'Bearer', kind: 'sk_live_', fingerprint: `fp${i % 3}` }], fingerprint_key: 'k1' })
      continue
    }
    const p = tool.paths[Math.floor(rnd() * tool.paths.length)]!
    const s = rnd()
    const status = s < 0.9 ? 200 : s < 0.95 ? 404 : s < 0.98 ? 429 : 500
    yield JSON.stringify({ ...base, event: 'credential.used', tool: tool.name, credential_id: cur.id, method: tool.name === 'github' ? 'GET' : 'POST', host: tool.host, path: p.endsWith('/') ? p + Math.floor(rnd() * 1000) : p, status, duration_ms: Math.round(rnd() * 300), client: '127.0.0.1:5000', placeholder: 'stripped', request_id: `r${i}`, ...(i % 7 === 0 ? { task: `task-${i % 50}` } : {}) })
  }
}

export interface SealedTrail {
  lines: string[]
  /** Each instance's public audit key, as its GET /audit-key would serve it. */
  keys: AuditJwk[]
}

/**
 * `lines` (JSON objects, one per line) as a sidekey trail: each instance (`instance_id`) a run that opens with
 * `audit.started`, seals every line into its chain, writes a signed `audit.checkpoint` every `every` lines and a
 * final one at the end, so that `sidekey audit verify --keys` passes it. Order across instances is kept; a line
 * that is not a JSON object stays as it is, unsealed.
 */
export function sealTrail (lines: Iterable<string>, every = 100): SealedTrail {
  const runs = new Map<string, { chain: AuditChain, key: AuditKey, since: number, time: unknown }>()
  const out: string[] = []
  const sealed = (chain: AuditChain, rec: Record<string, unknown>): string => chain.seal(JSON.stringify(rec) + '\n').slice(0, -1)
  const checkpoint = (instance: string, final: boolean): void => {
    const r = runs.get(instance)!
    const claims = { iss: instance, run_id: r.chain.runId, seq: r.chain.seq, chain: r.chain.last, final, iat: 1 }
    out.push(sealed(r.chain, { level: 30, time: r.time, instance_id: instance, event: 'audit.checkpoint', checkpoint: { seq: claims.seq, chain: claims.chain, final }, jws: signCheckpoint(r.key, claims) }))
    r.since = 0
  }
  for (const line of lines) {
    const rec = parseObject(line) as { instance_id?: unknown, time?: unknown } | undefined
    if (rec === undefined) { out.push(line); continue }
    const instance = String(rec.instance_id ?? '')
    let r = runs.get(instance)
    if (r === undefined) {
      const pair = generateKeyPairSync('ed25519')
      r = { chain: new AuditChain(), key: { privateKey: pair.privateKey, publicJwk: publicJwk(pair.publicKey) }, since: 0, time: rec.time }
      runs.set(instance, r)
      out.push(sealed(r.chain, { level: 30, time: rec.time, instance_id: instance, event: 'audit.started', format: TRAIL_FORMAT, key: r.key.publicJwk, previous: null }))
    }
    r.time = rec.time
    out.push(r.chain.seal(line + '\n').slice(0, -1))
    if (++r.since >= every) checkpoint(instance, false)
  }
  for (const instance of runs.keys()) checkpoint(instance, true)
  return { lines: out, keys: [...runs.values()].map((r) => r.key.publicJwk) }
}

/** The seal for `unsealedBody` (a line without its seal, ending `}`) as run `runId` seq `seq` after `prev`. */
export function reseal (unsealedBody: string, runId: string, seq: number, prev: string): string {
  const body = unsealedBody.slice(0, -1) + `,"run_id":${JSON.stringify(runId)},"seq":${seq}`
  return body + `,"chain":"${chainDigest(prev, body + '}')}"}`
}

/**
 * What an attacker who knows the format can do: edit the lines from `from` on and recompute every chain after it,
 * re-signing the checkpoints when given a key.
 */
export function rechain (lines: readonly string[], from: number, edit: (l: string) => string, key?: AuditKey): string[] {
  const out = [...lines]
  let prev = from === 0 ? '' : parse(lines[from - 1]!).chain as string
  // Renumbered from `from` on, so that a line removed before the rewrite leaves no gap (lines of one run).
  let seq = from === 0 ? 0 : parse(lines[from - 1]!).seq as number
  for (let i = from; i < lines.length; i++) {
    const rec: Record<string, unknown> = { ...parse(lines[i]!), seq: ++seq }
    let text = lines[i]!.replace(/,"run_id":"[^"]*","seq":\d+,"chain":"[^"]*"\}$/, '}')
    text = edit(text)
    if (key !== undefined && rec.event === 'audit.checkpoint') {
      const claims = { iss: rec.instance_id as string, run_id: rec.run_id as string, seq: (rec.seq as number) - 1, chain: prev, final: (rec.checkpoint as { final: boolean }).final, iat: 1 }
      text = text.replace(/"checkpoint":\{[^}]*\},"jws":"[^"]*"/, `"checkpoint":${JSON.stringify({ seq: claims.seq, chain: prev, final: claims.final })},"jws":"${signCheckpoint(key, claims)}"`)
    }
    out[i] = reseal(text, rec.run_id as string, rec.seq as number, prev)
    prev = parse(out[i]!).chain as string
  }
  return out
}

const parse = (l: string): Record<string, unknown> => JSON.parse(l) as Record<string, unknown>

function parseObject (l: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(l)
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}
