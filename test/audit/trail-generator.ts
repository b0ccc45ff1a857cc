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
