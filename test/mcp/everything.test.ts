import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import { startSidekey } from '../helpers/sidekey.js'
import { connectThrough, mcpToolYaml } from '../helpers/mcp.js'
import { startEverything } from '../helpers/mcp-everything.js'

// server-everything (the MCP reference server) with sessions, as its own Streamable HTTP entry runs it, on
// 127.0.0.1 behind a bearer check; the agent reaches it through sidekey with an allowlist.
const TOKEN = 'everything-real-token-41c2'
const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-all-'))
writeFileSync(join(dir, 'token'), TOKEN)
const upstream = await startEverything(`Bearer ${TOKEN}`)
t.teardown(() => upstream.close())
const port = upstream.port

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
  t.notOk(upstream.calledTools.includes('get-env'), 'get-env (it would print the server environment) never reached the server')
  t.notOk(sk.log.text.includes(TOKEN))
})
