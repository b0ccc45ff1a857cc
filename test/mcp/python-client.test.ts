import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startSidekey } from '../helpers/sidekey.js'
import { startEverything } from '../helpers/mcp-everything.js'
import { upstreamPki } from '../helpers/upstream.js'
import { needBinary, systemBinary } from '../helpers/system-binary.js'

// A Python agent (test/fixtures/mcp/agent.py: urllib, HTTPS_PROXY, SSL_CERT_FILE) reaches server-everything over
// HTTPS through sidekey, which intercepts the TLS and scopes the credential to an `mcp:` allowlist.
const TOKEN = 'python-mcp-real-token-93fa'
const AGENT = fileURLToPath(new URL('../fixtures/mcp/agent.py', import.meta.url))
const python = await systemBinary('python3', 'python3')

interface Step { step: string, status: number, content_type: string, body: string, answer: Record<string, any> | null }

const title = 'a stdlib Python MCP client through HTTPS_PROXY: allowed calls answered, refused ones explained to it'
t.test(title, { skip: python.skip }, async (t) => {
  if (!needBinary(t, python)) return
  const pki = await upstreamPki()
  const upstream = await startEverything(`Bearer ${TOKEN}`, undefined, await pki.cert('mcp.python.test'))
  t.teardown(() => upstream.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-python-'))
  writeFileSync(join(dir, 'token'), TOKEN)
  const sk = await startSidekey(t, `
instance_id: mcp-python
ca: { dir: {{CA_DIR}} }
resolve: { mcp.python.test: 127.0.0.1 }
upstream_ca_file: ${pki.caFile}
issuers: { token: { type: file, path: ${join(dir, 'token')} } }
tools:
  everything:
    match: { host: mcp.python.test, port: ${upstream.port} }
    issuer: token
    mcp: { tools: [echo, get-sum], prompts: [simple-prompt] }
`)
  const { stdout } = await promisify(execFile)(python.path!, [AGENT, `https://mcp.python.test:${upstream.port}/mcp`], {
    timeout: 30_000,
    env: {
      PATH: process.env.PATH,
      HTTPS_PROXY: sk.proxyUrl,
      NO_PROXY: '',
      SSL_CERT_FILE: join(sk.caDir, 'ca.pem'),
      MCP_AUTHORIZATION: 'Bearer placeholder',
      MCP_CALL_TOOLS: 'echo,get-env',
      MCP_GET_PROMPTS: 'args-prompt',
    },
  })
  const steps = new Map(stdout.trim().split('\n').map((l) => JSON.parse(l) as Step).map((s) => [s.step, s]))
  t.match(steps.get('initialize')?.answer, { result: { serverInfo: { name: String } } }, 'initialize answered')
  t.equal(steps.get('initialized')?.status, 202)

  const list = steps.get('tools/list')!
  t.match(list.content_type, /^text\/event-stream/, 'the list came as an SSE stream, which the client read')
  t.same((list.answer?.result.tools as Array<{ name: string }>).map((x) => x.name).sort(), ['echo', 'get-sum'],
    'the tools offered are the allowlist')

  t.match(steps.get('tools/call echo')?.answer, { result: { content: [{ text: /hello from python/ }] } },
    'an allowed call runs')

  const refusedTool = steps.get('tools/call get-env')!
  t.equal(refusedTool.status, 200)
  t.match(refusedTool.content_type, /^application\/json/)
  const refusal = { type: 'text', text: /sidekey refused the MCP tool "get-env"/ }
  t.match(refusedTool.answer, { result: { isError: true, content: [refusal] } },
    'a refused tool is answered as a tool error naming it, which the client hands to the model')
  const refusedPrompt = steps.get('prompts/get args-prompt')!
  t.match(refusedPrompt.answer, { error: { code: -32602, message: /sidekey refused the MCP prompt "args-prompt"/ } },
    'a refused prompt is a JSON-RPC error naming it')

  t.notOk(upstream.calledTools.includes('get-env'), 'the refused tool never reached the server')
  const reached = upstream.authorizations
  t.ok(reached.length >= 4 && reached.every((a) => a === `Bearer ${TOKEN}`),
    'the server saw the real credential on every request')
  t.notOk(stdout.includes(TOKEN), 'the Python client never read the credential, in a header or a body')
  const denied = sk.log.events('credential.used').find((e) => e.outcome === 'mcp_denied')
  t.match(denied, { mcp: { method: 'tools/call', name: 'get-env' } })
})
