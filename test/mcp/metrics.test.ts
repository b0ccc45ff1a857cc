import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProxyAgent, request } from 'undici'
import { startSidekey } from '../helpers/sidekey.js'
import { mcpToolYaml, startMcpUpstream } from '../helpers/mcp.js'
import { needBinary, systemBinary } from '../helpers/system-binary.js'

const TOKEN = 'real-mcp-token-metrics-5d1e'
const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-metrics-'))
writeFileSync(join(dir, 'token'), TOKEN)
const promtool = await systemBinary('promtool', 'prometheus')

function promtoolCheck (path: string, text: string): Promise<{ code: number, output: string }> {
  return new Promise((resolve) => {
    const child = execFile(path, ['check', 'metrics'], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr })
    })
    child.stdin?.end(text)
  })
}

/**
 * sidekey_mcp_calls_total labels a call by the `mcp.tools` entry that allowed it. The agent chooses the names it
 * calls, so a model (or a prompt injection) inventing 1,000 names must not add 1,000 series: they all count as
 * `_other`. The calls go through a running sidekey to the SDK's server; the count is read from the admin port.
 */
t.test('1,000 invented MCP tool names add one series; listed names and globs get their own', async (t) => {
  const up = await startMcpUpstream(TOKEN, true)
  t.teardown(() => up.close())
  const token = join(dir, 'token')
  const yaml = (tools: string): string => mcpToolYaml('mcp.tool.test', up.port, token, `{ tools: ${tools} }`)
  const configFile = join(dir, 'sidekey.yaml')
  const sk = await startSidekey(t, yaml('[get_issue, "search_*"]'), { configFile })
  const dispatcher = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
  t.teardown(() => dispatcher.close())
  const accept = 'application/json, text/event-stream'
  const headers = { 'content-type': 'application/json', accept, authorization: 'Bearer x' }
  let id = 0
  const callTool = async (name: string): Promise<string> => {
    const res = await request(`http://mcp.tool.test:${up.port}/mcp`, {
      dispatcher,
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'tools/call', params: { name, arguments: {} } }),
    })
    return await res.body.text()
  }
  t.match(await callTool('get_issue'), /get_issue ran/)
  t.match(await callTool('search_code'), /search_code ran/)
  const invented = Array.from({ length: 1000 }, () => `tool_${randomBytes(6).toString('hex')}`)
  for (let i = 0; i < invented.length; i += 20) {
    const answers = await Promise.all(invented.slice(i, i + 20).map(callTool))
    if (i === 0) t.match(answers[0], /refused the MCP tool/, 'an invented name is refused')
  }
  await sk.app.audit.settled()

  const text = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  const series = text.split('\n').filter((l) => l.startsWith('sidekey_mcp_calls_total{'))
  t.same(series.sort(), [
    'sidekey_mcp_calls_total{tool="mcp-tool",mcp_tool="_other",outcome="mcp_denied"} 1000',
    'sidekey_mcp_calls_total{tool="mcp-tool",mcp_tool="get_issue",outcome="forwarded"} 1',
    'sidekey_mcp_calls_total{tool="mcp-tool",mcp_tool="search_*",outcome="forwarded"} 1',
  ], 'three series: two entries of mcp.tools, and everything else')
  t.notOk(invented.some((name) => text.includes(name)), 'no invented name is a label value')
  t.notOk(text.includes(TOKEN), 'the credential is not in the metrics')

  // A reload that lists search_code by name: its calls are counted under the name from then on, and the
  // glob's series keeps its count.
  await writeFile(configFile, yaml('[get_issue, search_code]').replaceAll('{{CA_DIR}}', sk.caDir))
  await sk.app.reload()
  t.match(await callTool('search_code'), /search_code ran/)
  await sk.app.audit.settled()
  const reloaded = await (await request(`${sk.adminUrl}/metrics`)).body.text()
  t.match(reloaded, /^sidekey_mcp_calls_total\{tool="mcp-tool",mcp_tool="search_code",outcome="forwarded"\} 1$/m)
  t.match(reloaded, /^sidekey_mcp_calls_total\{tool="mcp-tool",mcp_tool="search_\*",outcome="forwarded"\} 1$/m)

  t.test('promtool check metrics accepts the exposition', { skip: promtool.skip }, async (t) => {
    if (!needBinary(t, promtool)) return
    const check = await promtoolCheck(promtool.path!, text)
    t.equal(check.code, 0, check.output)
    t.equal(check.output.trim(), '', 'no lint complaint')
  })
})
