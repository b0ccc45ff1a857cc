import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSidekey } from '../helpers/sidekey.js'
import { mcpToolYaml } from '../helpers/mcp.js'
import { startEverything } from '../helpers/mcp-everything.js'
import { conformanceServer } from '../helpers/mcp-conformance-server.js'

// The MCP conformance suite's server scenarios (@modelcontextprotocol/conformance, its own client and checks) run
// twice against one server: directly, then through sidekey as the agent's forward proxy with an `mcp:` allowlist
// of what the scenarios call. sidekey in the middle must not change which scenarios pass.
const TOKEN = 'conformance-real-token-7d0e'
const CLI = createRequire(import.meta.url).resolve('@modelcontextprotocol/conformance/dist/index.js')
const PRELOAD = fileURLToPath(new URL('../fixtures/conformance/through-proxy.mjs', import.meta.url))
const TOOLS = [
  'test_simple_text', 'test_image_content', 'test_audio_content', 'test_embedded_resource',
  'test_multiple_content_types', 'test_tool_with_logging', 'test_tool_with_progress', 'test_error_handling',
  'test_sampling', 'test_elicitation', 'test_elicitation_sep1034_defaults', 'test_elicitation_sep1330_enums',
]
const ALLOWLIST = `{ tools: [${TOOLS.join(', ')}], resources: ["test://*"], prompts: ["test_*"] }`

interface Run { passed: string[], failed: string[], output: string }

/** `conformance server` (every active scenario) against `url`; which scenarios passed, read from its checks.json. */
async function conformance (url: string, env: Record<string, string>): Promise<Run> {
  const outDir = mkdtempSync(join(tmpdir(), 'sidekey-conformance-'))
  const args = ['--import', PRELOAD, CLI, 'server', '--url', url, '-o', outDir]
  const output = await new Promise<string>((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    child.stdout.on('data', (c: Buffer) => { text += c.toString() })
    child.stderr.on('data', (c: Buffer) => { text += c.toString() })
    // Bounded: a scenario that hangs fails the test instead of the run.
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
    child.on('close', () => { clearTimeout(timer); resolve(text) })
  })
  const passed: string[] = []
  const failed: string[] = []
  let checksText = ''
  for (const dir of readdirSync(outDir)) {
    const scenario = /^server-(.+)-\d{4}-\d\d-\d\dT/.exec(dir)?.[1]
    if (scenario === undefined) continue
    const text = readFileSync(join(outDir, dir, 'checks.json'), 'utf8')
    checksText += text
    const checks = JSON.parse(text) as Array<{ status: string }>
    ;(checks.length > 0 && checks.every((c) => c.status !== 'FAILURE') ? passed : failed).push(scenario)
  }
  return { passed: passed.sort(), failed: failed.sort(), output: output + checksText }
}

function summary (how: string, run: Run): string {
  return `${how}: ${run.passed.length} passed (${run.passed.join(', ')}); failed: ${run.failed.join(', ')}`
}

t.test('the conformance server scenarios that pass directly pass through sidekey, and no others', async (t) => {
  const upstream = await startEverything(`Bearer ${TOKEN}`, conformanceServer)
  t.teardown(() => upstream.close())
  const direct = await conformance(`http://127.0.0.1:${upstream.port}/mcp`, { AGENT_AUTHORIZATION: `Bearer ${TOKEN}` })
  t.comment(summary('directly', direct))
  // The flows a proxy could break: notifications and server requests on the tool call's SSE stream.
  const streamed = ['tools-call-with-progress', 'tools-call-with-logging', 'tools-call-sampling',
    'tools-call-elicitation']
  for (const s of streamed) {
    t.ok(direct.passed.includes(s), `${s} passes directly (else the comparison proves nothing about it)`)
  }

  const dir = mkdtempSync(join(tmpdir(), 'sidekey-conformance-cfg-'))
  writeFileSync(join(dir, 'token'), TOKEN)
  const sk = await startSidekey(t, mcpToolYaml('conformance.tool.test', upstream.port, join(dir, 'token'), ALLOWLIST))
  const before = upstream.authorizations.length
  const through = await conformance(`http://conformance.tool.test:${upstream.port}/mcp`, {
    SIDEKEY_PROXY: sk.proxyUrl, AGENT_AUTHORIZATION: 'Bearer placeholder',
  })
  t.comment(summary('through sidekey', through))
  t.same(through.passed, direct.passed, 'the same scenarios pass through sidekey as directly')
  t.same(through.failed, direct.failed)

  const seen = upstream.authorizations.slice(before)
  t.ok(seen.length > 0 && seen.every((a) => a === `Bearer ${TOKEN}`),
    'every request reached the server with the real credential')
  t.notOk(through.output.includes(TOKEN), 'the conformance client never read the credential back')
  t.notOk(sk.log.text.includes(TOKEN), 'nor did sidekey log it')
  const called = new Set(sk.log.events('credential.used').map((e) => (e.mcp as { name?: string } | undefined)?.name))
  for (const name of ['test_sampling', 'test_tool_with_progress']) t.ok(called.has(name), `the audit names ${name}`)
})
