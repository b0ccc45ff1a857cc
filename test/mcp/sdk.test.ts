import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request as httpRequest } from 'node:http'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { startSidekey } from '../helpers/sidekey.js'
import { connectThrough, mcpToolYaml, startMcpUpstream } from '../helpers/mcp.js'

const TOKEN = 'real-mcp-token-7f3a9c'
const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-'))
writeFileSync(join(dir, 'token'), TOKEN)

for (const mode of ['json', 'sse'] as const) {
  t.test(`the SDK client through sidekey, ${mode} answers`, async (t) => {
    const up = await startMcpUpstream(TOKEN, mode === 'json')
    t.teardown(() => up.close())
    const sk = await startSidekey(t, `
instance_id: mcp-test
ca: { dir: {{CA_DIR}} }
resolve: { mcp.tool.test: 127.0.0.1 }
issuers: { gh: { type: file, path: ${join(dir, 'token')} } }
tools:
  github-mcp:
    match: { host: mcp.tool.test, port: ${up.port}, path_prefix: /mcp }
    issuer: gh
    plaintext: true
    mcp: { tools: [get_issue, "search_*", gated_progress], prompts: [triage] }
`)
    const url = `http://mcp.tool.test:${up.port}/mcp`
    const client = await connectThrough(sk.proxyUrl, url)
    t.teardown(() => client.close())

    const listed = await client.listTools()
    t.same(listed.tools.map((x) => x.name).sort(), ['gated_progress', 'get_issue', 'search_code'], 'delete_repo is not offered')
    const prompts = await client.listPrompts()
    t.same(prompts.prompts.map((p) => p.name), ['triage'])

    const allowed = await client.callTool({ name: 'get_issue', arguments: { q: '42' } })
    t.match(allowed.content, [{ type: 'text', text: /get_issue ran/ }])
    t.same(up.authorizations.filter((a) => a !== `Bearer ${TOKEN}`), [], 'the server only ever saw the real credential')

    const refused = await client.callTool({ name: 'delete_repo', arguments: { q: 'acme/prod' } })
    t.equal(refused.isError, true, 'the model reads a refused tool as a tool error')
    t.match(refused.content, [{ type: 'text', text: /refused the MCP tool "delete_repo"/ }])
    t.notOk(up.received.some((m) => (m.params as { name?: string } | undefined)?.name === 'delete_repo'), 'the server never got it')

    const prompt = await client.getPrompt({ name: 'secret_prompt' }).then(() => undefined, (err: unknown) => err)
    t.ok(prompt instanceof McpError, 'a refused prompt is raised as an MCP error')
    t.match((prompt as Error).message, /secret_prompt/)

    // The answer streams: the tool waits for its progress notification to reach the client before it answers.
    if (mode === 'json') return
    const streamed = await client.callTool({ name: 'gated_progress', arguments: {} }, undefined, { onprogress: () => up.release() })
    t.match(streamed.content, [{ type: 'text', text: 'done' }])

    const used = sk.log.events('credential.used')
    t.ok(used.some((e) => e.outcome === undefined && (e.mcp as { name?: string } | undefined)?.name === 'get_issue'), 'the allowed call is audited with its MCP tool')
    const denied = used.find((e) => e.outcome === 'mcp_denied')
    t.match(denied, { status: 200, credential_id: null, mcp: { method: 'tools/call', name: 'delete_repo' }, error: 'SIDEKEY_MCP_DENIED' })
    t.ok(used.some((e) => (e.mcp as { method?: string } | undefined)?.method === 'tools/list'))
    t.notOk(sk.log.text.includes(TOKEN), 'the credential is never logged')
  })
}

t.test('raw requests: SEP-2243 headers that disagree with the body, malformed bodies, batches, a body over the limit', async (t) => {
  const up = await startMcpUpstream(TOKEN, true)
  t.teardown(() => up.close())
  const sk = await startSidekey(t, mcpToolYaml('mcp.tool.test', up.port, join(dir, 'token'), '{ tools: [get_issue] }', '\nlimits: { replay_body_bytes: 4096 }'))
  // Absolute-form over plain HTTP, bytes as written (node:http).
  const post = (body: string, headers: Record<string, string> = {}): Promise<{ status: number, json: unknown }> => new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: sk.proxyPort,
      method: 'POST',
      path: `http://mcp.tool.test:${up.port}/mcp`,
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: 'Bearer x', ...headers },
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text) })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
  const call = (name: string, id = 1): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } })
  const before = up.received.length

  const lying = await post(call('delete_repo'), { 'mcp-method': 'tools/call', 'mcp-name': 'get_issue' })
  t.equal(lying.status, 400, 'an Mcp-Name naming an allowed tool over a body calling another is refused')
  t.match(lying.json, { id: null, error: { code: -32020 } })
  const wrongMethod = await post(call('get_issue'), { 'mcp-method': 'tools/list' })
  t.equal(wrongMethod.status, 400)
  const badSentinel = await post(call('get_issue'), { 'mcp-name': '=?base64?Z2V0X2lzc3V?=' })
  t.equal(badSentinel.status, 400, 'a sentinel that is not canonical base64 is invalid')
  const nonAscii = await post(call('get_issue'), { 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${Buffer.from('get_issue').toString('base64')}?=` })
  t.equal(nonAscii.status, 200, 'a base64-wrapped Mcp-Name that agrees passes')

  const repeated = await post('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_issue","name":"delete_repo"}}')
  t.equal(repeated.status, 400, 'a repeated member is refused: parsers disagree on which one counts')
  t.match(repeated.json, { error: { code: -32700 } })
  const escaped = await post('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\\u006eame":"delete_\\u0072epo"}}')
  t.match(escaped, { status: 200, json: { id: 1, result: { isError: true } } }, 'escapes are read as the server reads them')
  const batch = await post(`[${call('get_issue', 1)},${call('delete_repo', 2)}]`)
  t.match(batch, { status: 200, json: [{ id: 1, error: { code: -32600 } }, { id: 2, result: { isError: true } }] }, 'a batch with a refused member is refused whole')
  const big = await post(call('get_issue').replace('{}', JSON.stringify({ q: 'x'.repeat(5000) })))
  t.equal(big.status, 413, 'a body sidekey cannot hold is refused, not passed on unread')
  const calls = up.received.slice(before).filter((m) => m.method === 'tools/call')
  t.same(calls.map((m) => (m.params as { name: string }).name), ['get_issue'], 'only the agreeing call reached the server')
  const outcomes = sk.log.events('credential.used').map((e) => e.outcome)
  t.same(outcomes, ['bad_request', 'bad_request', 'bad_request', undefined, 'bad_request', 'mcp_denied', 'mcp_denied', 'bad_request'])
})
