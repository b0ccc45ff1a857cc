import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startSidekey } from '../helpers/sidekey.js'
import { connectThrough, startMcpUpstream } from '../helpers/mcp.js'

const TOKEN = 'real-mcp-token-budget-51c0'
const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-budget-'))
writeFileSync(join(dir, 'token'), TOKEN)

const TITLE = 'an MCP tool under a request budget: the SDK client gets 429 once it is spent; the server never sees it'
t.test(TITLE, async (t) => {
  const up = await startMcpUpstream(TOKEN, true)
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: mcp-budget
ca: { dir: {{CA_DIR}} }
resolve: { mcp.tool.test: 127.0.0.1 }
issuers: { gh: { type: file, path: ${join(dir, 'token')} } }
tools:
  github-mcp:
    match: { host: mcp.tool.test, port: ${up.port}, path_prefix: /mcp }
    issuer: gh
    plaintext: true
    mcp: { tools: ["*"] }
    budget: [{ requests: 5, per: 1h, by: task }]
`)
  const client = await connectThrough(sk.proxyUrl, `http://mcp.tool.test:${up.port}/mcp`)
  t.teardown(() => client.close())
  // initialize, notifications/initialized and the SDK's GET for server messages count too: every call is one.
  const calls = (): number => up.received.filter((m) => m.method === 'tools/call').length
  let err: Error | undefined
  for (let i = 0; i < 10 && err === undefined; i++) {
    err = await client.callTool({ name: 'get_issue', arguments: { q: String(i) } })
      .then(() => undefined, (e: unknown) => e as Error)
  }
  t.equal((err as { code?: number } | undefined)?.code, 429, 'the client sees the 429')
  t.match(err?.message, /budget_exhausted/)
  t.equal(up.authorizations.length, 5, 'the server saw exactly five calls')
  t.ok(calls() >= 1, `${calls()} tools/call went through before the budget ran out`)
  t.ok(up.authorizations.every((a) => a === `Bearer ${TOKEN}`))
  const refused = sk.log.events('credential.used').find((e) => e.outcome === 'budget_exhausted')
  const mcp = { method: 'tools/call', name: 'get_issue' }
  t.match(refused, { tool: 'github-mcp', status: 429, budget: 'requests:5/1h/task', mcp })
})
