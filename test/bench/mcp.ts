import { checkMcpRequest } from '../../src/mcp/check.js'
import { matcher, type McpPolicy } from '../../src/mcp/policy.js'
import { mcpResponseFilter } from '../../src/mcp/response.js'

/**
 * The CPU sidekey spends reading MCP traffic, per call, in-process: judging a `tools/call` with a 2 KiB argument
 * (JSON.parse of the same bytes as the floor), and filtering a 200-tool `tools/list` answer to 20 tools, as one JSON
 * body and as one SSE event. Run: TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/mcp.ts
 */
const policy: McpPolicy = { tools: matcher(['get_*', 'search_code', 'tool_1?']) }
const call = Buffer.from(JSON.stringify({
  jsonrpc: '2.0', id: 12, method: 'tools/call', params: { name: 'search_code', arguments: { query: 'q'.repeat(1024), body: 'é'.repeat(512) } },
}))
const tools = Array.from({ length: 200 }, (_, i) => ({
  name: i % 10 === 0 ? `get_${i}` : `tool_${i}`,
  description: `Tool number ${i}: does something useful with a repository, an issue or a pull request.`,
  inputSchema: { type: 'object', properties: { owner: { type: 'string' }, repo: { type: 'string' }, n: { type: 'number' } }, required: ['owner'] },
}))
const listAnswer = JSON.stringify({ jsonrpc: '2.0', id: 3, result: { tools, nextCursor: 'abc' } })
const listCheck = checkMcpRequest(policy, {}, Buffer.from('{"jsonrpc":"2.0","id":3,"method":"tools/list"}'))

function perCallUs (what: string, n: number, fn: () => void): void {
  for (let i = 0; i < Math.min(n, 500); i++) fn()
  const start = process.cpuUsage()
  for (let i = 0; i < n; i++) fn()
  const used = process.cpuUsage(start)
  console.log(`| ${what} | ${((used.user + used.system) / n).toFixed(1)} |`)
}

console.log(`tools/call body ${call.length} B; tools/list answer ${listAnswer.length} B (200 tools, 20 kept)\n`)
console.log('| per call | CPU µs |\n| --- | ---: |')
perCallUs('tools/call judged (strict parse, repeats, headers, policy)', 20_000, () => { checkMcpRequest(policy, {}, call) })
perCallUs('JSON.parse of the same body (floor)', 20_000, () => { JSON.parse(call.toString()) })
perCallUs('tools/list answer filtered, JSON', 2_000, () => {
  const f = mcpResponseFilter(policy, listCheck, 'application/json')!
  f.push(Buffer.from(listAnswer))
  f.end()
})
const event = Buffer.from(`event: message\ndata: ${listAnswer}\n\n`)
perCallUs('tools/list answer filtered, one SSE event', 2_000, () => {
  const f = mcpResponseFilter(policy, listCheck, 'text/event-stream')!
  f.push(event)
  f.end()
})
