import t from 'tap'
import { connect, type Socket } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { connectThrough, startMcpUpstream } from '../helpers/mcp.js'
import { startUpstream } from '../helpers/upstream.js'
import { startApprovals } from '../helpers/approvals.js'

/** `mcp_tools` rules hold MCP calls (alone or in a batch, held whole) as HTTP rules hold HTTP calls, and upgrades. */

const TOKEN = 'real-mcp-token-7f3a9c'
const up = await startMcpUpstream(TOKEN, true)
t.teardown(() => up.close())
const ws = await startUpstream()
t.teardown(() => ws.close())
let upgrades = 0
ws.server.on('upgrade', (_req, socket: Socket) => { upgrades++; socket.destroy() })
const dir = mkdtempSync(join(tmpdir(), 'sidekey-approvals-mcp-'))
writeFileSync(join(dir, 'token'), TOKEN)
const file = join(dir, 'sidekey.yaml')
writeFileSync(file, `
instance_id: approvals-mcp
ca: { dir: ${join(dir, 'ca')} }
resolve: { mcp.tool.test: 127.0.0.1, ws.tool.test: 127.0.0.1 }
issuers: { token: { type: file, path: ${join(dir, 'token')} } }
tools:
  mcp-tool:
    match: { host: mcp.tool.test, port: ${up.port} }
    issuer: token
    plaintext: true
    mcp: { tools: ["*"] }
    approve: [{ mcp_tools: [delete_repo, "search_*"] }]
    approval: { timeout: 60s }
  ws-tool:
    match: { host: ws.tool.test, port: ${ws.port} }
    issuer: token
    plaintext: true
    approve: [{ methods: [GET], path_prefix: /socket }]
    approval: { timeout: 1s }
`)
const sk = await startApprovals(t, file)
const url = `http://mcp.tool.test:${up.port}/mcp`
const client = await connectThrough(sk.proxyUrl, url)
t.teardown(() => client.close())
const named = (name: string) => up.received.filter((m) => (m.params as { name?: string } | undefined)?.name === name)

t.test('a tool no rule names runs at once; a named one waits for approval, then runs with the token', async (t) => {
  const free = await client.callTool({ name: 'get_issue', arguments: { q: '1' } })
  t.match(free.content, [{ type: 'text', text: /get_issue ran/ }])
  const call = client.callTool({ name: 'delete_repo', arguments: { q: 'acme/old' } })
  const approval = await sk.heldCall('mcp-tool')
  const requested = sk.log.events('approval.requested').find((e) => e.id === approval.id)
  t.match(requested, { mcp: { method: 'tools/call', name: 'delete_repo' } })
  t.same(named('delete_repo'), [], 'the server has not seen it')
  t.equal(await sk.decide(approval.id, 'approve'), 200)
  const result = await call
  t.match(result.content, [{ type: 'text', text: /delete_repo ran with .*acme\/old/ }])
  t.equal(named('delete_repo').length, 1)
  t.same(up.authorizations.filter((a) => a !== `Bearer ${TOKEN}`), [], 'the server only ever saw the real credential')
})

t.test('denied: the model reads an isError result naming the approval; the server never gets the call', async (t) => {
  const call = client.callTool({ name: 'search_code', arguments: { q: 'password' } })
  const approval = await sk.heldCall('mcp-tool')
  t.equal(await sk.decide(approval.id, 'deny', 'no searching for passwords'), 200)
  const result = await call
  t.equal(result.isError, true)
  const text = new RegExp(`approval ${approval.id} was denied by admin: no searching`)
  t.match(result.content, [{ type: 'text', text }])
  t.same(named('search_code'), [])
  const used = sk.log.events('credential.used').at(-1)
  t.match(used, { tool: 'mcp-tool', outcome: 'approval_denied', error: 'SIDEKEY_APPROVAL_DENIED' })
})

t.test('a batch with one named call is held whole, and answered whole when denied', async (t) => {
  const before = up.received.length
  const batch = [
    { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_issue', arguments: { q: '2' } } },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'delete_repo', arguments: { q: 'acme/prod' } } },
  ]
  const call = request(url, {
    method: 'POST',
    dispatcher: sk.agent,
    body: JSON.stringify(batch),
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: 'Bearer placeholder',
    },
  })
  const approval = await sk.heldCall('mcp-tool')
  t.match(sk.log.events('approval.requested').find((e) => e.id === approval.id)?.mcp, { method: 'batch' })
  t.equal(up.received.length, before, 'no member was sent')
  t.equal(await sk.decide(approval.id, 'deny'), 200)
  const res = await call
  const answers = await res.body.json() as Array<{ id: number, result: { isError: boolean } }>
  t.same(answers.map((a) => [a.id, a.result.isError]), [[1, true], [2, true]], 'every member answered, none run')
  t.equal(up.received.length, before)
})

t.test('a WebSocket upgrade a rule names is held like any call: timed out, it never reaches the tool', async (t) => {
  const socket = connect(sk.proxyPort, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.write(`GET http://ws.tool.test:${ws.port}/socket HTTP/1.1\r\nHost: ws.tool.test:${ws.port}\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
    'Sec-WebSocket-Version: 13\r\n\r\n')
  let text = ''
  for await (const chunk of socket) {
    text += (chunk as Buffer).toString()
    if (text.includes('\r\n\r\n') && text.includes('}')) break
  }
  t.match(text, /^HTTP\/1\.1 403/)
  t.match(text, /"error":"approval_timeout"/)
  t.equal(upgrades, 0, 'the upgrade never reached the tool')
  t.equal(ws.seen.length, 0)
})
