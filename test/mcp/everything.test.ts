import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { startSidekey } from '../helpers/sidekey.js'
import { connectThrough, mcpToolYaml } from '../helpers/mcp.js'

// server-everything (the MCP reference server) with sessions, as its own Streamable HTTP entry runs it, on
// 127.0.0.1 behind a bearer check; the agent reaches it through sidekey with an allowlist.
const TOKEN = 'everything-real-token-41c2'
// The package ships no type declarations for its server factory.
const EVERYTHING: string = '@modelcontextprotocol/server-everything/dist/server/index.js'
const { createServer: createEverything } = await import(EVERYTHING) as { createServer: () => { server: McpServer } }
const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-all-'))
writeFileSync(join(dir, 'token'), TOKEN)
const sessions = new Map<string, StreamableHTTPServerTransport>()
const seenTools: string[] = []
const http = createServer((req, res) => {
  void (async () => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401).end()
      return
    }
    const id = req.headers['mcp-session-id'] as string | undefined
    let transport = id === undefined ? undefined : sessions.get(id)
    let body: unknown
    if (req.method === 'POST') {
      const chunks: Buffer[] = []
      for await (const c of req) chunks.push(c as Buffer)
      body = JSON.parse(Buffer.concat(chunks).toString())
      const m = body as { method?: string, params?: { name?: string } }
      if (m.method === 'tools/call') seenTools.push(m.params!.name!)
    }
    if (transport === undefined) {
      const { server } = createEverything()
      transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (sid) => { sessions.set(sid, transport!) } })
      await server.connect(transport)
    }
    await transport.handleRequest(req, res, body)
  })()
})
await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
t.teardown(async () => {
  for (const s of sessions.values()) await s.close()
  http.closeAllConnections()
  http.close()
})
const port = (http.address() as AddressInfo).port

t.test('server-everything behind an allowlist: progress, sampling and elicitation flows of allowed tools work', async (t) => {
  const allowed = '{ tools: [echo, get-sum, trigger-long-running-operation, trigger-sampling-request, trigger-elicitation-request] }'
  const sk = await startSidekey(t, mcpToolYaml('everything.tool.test', port, join(dir, 'token'), allowed))
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {} } })
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({ model: 'test-model', role: 'assistant', content: { type: 'text', text: 'sampled' } }))
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }))
  await connectThrough(sk.proxyUrl, `http://everything.tool.test:${port}/mcp`, client)
  t.teardown(() => client.close())

  const tools = (await client.listTools()).tools.map((x) => x.name).sort()
  t.same(tools, ['echo', 'get-sum', 'trigger-elicitation-request', 'trigger-long-running-operation', 'trigger-sampling-request'])
  t.match((await client.callTool({ name: 'echo', arguments: { message: 'hi' } })).content, [{ text: /hi/ }])
  const progress: number[] = []
  await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.2, steps: 2 } }, undefined, { onprogress: (p) => progress.push(p.progress) })
  t.same(progress, [1, 2], 'progress notifications reach the agent')
  t.match((await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'x', maxTokens: 5 } })).content, [{ text: /sampled/ }])
  t.match((await client.callTool({ name: 'trigger-elicitation-request', arguments: {} })).content, [{ text: /decline/ }])
  const refused = await client.callTool({ name: 'get-env', arguments: {} })
  t.equal(refused.isError, true)
  t.notOk(seenTools.includes('get-env'), 'get-env (it would print the server environment) never reached the server')
  t.notOk(sk.log.text.includes(TOKEN))
})
