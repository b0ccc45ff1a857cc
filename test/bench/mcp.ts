import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { Pool } from 'undici'
import { checkMcpRequest } from '../../src/mcp/check.js'
import { matcher, type McpPolicy } from '../../src/mcp/policy.js'
import { mcpResponseFilter } from '../../src/mcp/response.js'
import { MCP_BENCH_TOOLS, MCP_HOST, MCP_PLAIN_HOST } from './proxy-server.js'

/**
 * What reading MCP traffic costs per call. `npm run bench` (section `mcp`, mcpTable): the proxy's CPU per call for a
 * `tools/call` with a 2 KiB argument and a 200-tool `tools/list` (JSON and SSE), through a tool with `mcp:` and the
 * same calls through a tool without it, in one run. Run directly, the in-process cost of judging and filtering:
 * TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/mcp.ts
 */

const policy: McpPolicy = { tools: matcher(MCP_BENCH_TOOLS) }
const call = Buffer.from(JSON.stringify({
  jsonrpc: '2.0', id: 12, method: 'tools/call', params: { name: 'search_code', arguments: { query: 'q'.repeat(1024), body: 'é'.repeat(512) } },
}))
const list = Buffer.from('{"jsonrpc":"2.0","id":3,"method":"tools/list"}')
const tools = Array.from({ length: 200 }, (_, i) => ({
  name: i % 10 === 0 ? `get_${i}` : `tool_${i}`,
  description: `Tool number ${i}: does something useful with a repository, an issue or a pull request.`,
  inputSchema: { type: 'object', properties: { owner: { type: 'string' }, repo: { type: 'string' }, n: { type: 'number' } }, required: ['owner'] },
}))
const kept = tools.filter((t) => policy.tools.allows(t.name)).length
const listAnswer = JSON.stringify({ jsonrpc: '2.0', id: 3, result: { tools, nextCursor: 'abc' } })
const callAnswer = JSON.stringify({ jsonrpc: '2.0', id: 12, result: { content: [{ type: 'text', text: 'found 3 matches' }] } })

/** The MCP server stand-in: the list or the call's answer, as JSON (`/json`) or as one SSE event (`/sse`). */
function answer (req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString().includes('"tools/list"') ? listAnswer : callAnswer
    const sse = req.url === '/sse'
    const body = Buffer.from(sse ? `event: message\ndata: ${text}\n\n` : text)
    res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json', 'content-length': body.length })
    res.end(body)
  })
}

/** What mcpTable needs of run.ts: a sidekey with the two MCP bench tools on `mcpPort`, measured by its CPU. */
export interface McpBenchProxy {
  readonly port: number
  cpuUs (): Promise<number>
  stop (): Promise<void>
}

interface McpCell { readonly label: string, readonly body: Buffer, readonly path: '/json' | '/sse' }
const CELLS: readonly McpCell[] = [
  { label: `tools/call, ${call.length} B body, JSON answer`, body: call, path: '/json' },
  { label: `tools/list, 200 tools (${kept} kept), JSON`, body: list, path: '/json' },
  { label: `tools/list, 200 tools (${kept} kept), SSE`, body: list, path: '/sse' },
]

/** Closed-loop POSTs for `ms` (bounded by count too); the proxy's CPU µs per call. */
async function cpuPerCall (proxy: McpBenchProxy, host: string, cell: McpCell, ms: number): Promise<{ us: number, calls: number }> {
  const dispatcher = new Pool(`http://127.0.0.1:${proxy.port}`, { connections: 4, pipelining: 1 })
  const headers = { host, authorization: 'Bearer sidekey', 'content-type': 'application/json', accept: 'application/json, text/event-stream' }
  let calls = 0
  try {
    const cpu0 = await proxy.cpuUs()
    const deadline = performance.now() + ms
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline && calls < 1_000_000) {
        const r = await dispatcher.request({ origin: `http://${host}`, path: `http://${host}${cell.path}`, method: 'POST', headers, body: cell.body })
        const text = await r.body.text()
        if (r.statusCode !== 200) throw new Error(`${host}${cell.path}: ${r.statusCode} ${text.slice(0, 200)}`)
        calls++
      }
    }
    await Promise.all([worker(), worker(), worker(), worker()])
    return { us: (await proxy.cpuUs() - cpu0) / Math.max(1, calls), calls }
  } finally {
    await dispatcher.close()
  }
}

/**
 * The `mcp` section: per cell, the proxy's CPU µs per call through the MCP tool and through the plain one (same
 * upstream, same bytes), median of `reps` runs of `cellMs`, alternating which goes first.
 */
export async function mcpTable (o: { reps: number, cellMs: number, warmupMs: number }, start: (mcpPort: number) => Promise<McpBenchProxy>, out: string[]): Promise<void> {
  const server = createServer({ keepAliveTimeout: 60_000 }, answer)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const proxy = await start(port)
  try {
    const hosts = [`${MCP_HOST}:${port}`, `${MCP_PLAIN_HOST}:${port}`]
    await listedThrough(proxy, hosts[0]!, kept)
    await listedThrough(proxy, hosts[1]!, tools.length)
    const rows: string[] = []
    for (const cell of CELLS) {
      const runs = hosts.map(() => [] as number[])
      let calls = 0
      for (const host of hosts) await cpuPerCall(proxy, host, cell, o.warmupMs)
      for (let r = 0; r < o.reps; r++) {
        for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
          const measured = await cpuPerCall(proxy, hosts[i]!, cell, o.cellMs)
          runs[i]!.push(measured.us)
          calls += measured.calls
        }
      }
      const [mcp, plain] = runs.map(median) as [number, number]
      process.stderr.write(`  mcp ${cell.label}: ${mcp.toFixed(0)} µs with mcp:, ${plain.toFixed(0)} µs without (${calls} calls)\n`)
      rows.push(`| ${cell.label} | ${mcp.toFixed(0)} | ${plain.toFixed(0)} | ${(mcp - plain).toFixed(0)} | ${(mcp / plain).toFixed(2)}× |`)
    }
    out.push(`### MCP: proxy CPU per call, a tool with \`mcp:\` against the same call to a tool without it (HTTP absolute-form, 4 connections, median of ${o.reps} × ${o.cellMs / 1000} s)`, '')
    out.push('| call | µs with mcp: | µs without | added µs | ratio |', '|---|--:|--:|--:|--:|', ...rows, '')
  } finally {
    await proxy.stop()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
}

/** The cells measure what they say: the list through the MCP tool is filtered, through the other one it is not. */
async function listedThrough (proxy: McpBenchProxy, host: string, expected: number): Promise<void> {
  const dispatcher = new Pool(`http://127.0.0.1:${proxy.port}`)
  try {
    const headers = { host, authorization: 'Bearer sidekey', 'content-type': 'application/json', accept: 'application/json' }
    const r = await dispatcher.request({ origin: `http://${host}`, path: `http://${host}/json`, method: 'POST', headers, body: list })
    const listed = (await r.body.json() as { result?: { tools?: unknown[] } }).result?.tools?.length
    if (listed !== expected) throw new Error(`tools/list through ${host}: ${String(listed)} tools, expected ${expected}`)
  } finally {
    await dispatcher.close()
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** The in-process cost: judging a call and filtering a list answer, CPU µs per call. */
function microBench (): void {
  const listCheck = checkMcpRequest(policy, {}, list)
  const perCallUs = (what: string, n: number, fn: () => void): void => {
    for (let i = 0; i < Math.min(n, 500); i++) fn()
    const start = process.cpuUsage()
    for (let i = 0; i < n; i++) fn()
    const used = process.cpuUsage(start)
    console.log(`| ${what} | ${((used.user + used.system) / n).toFixed(1)} |`)
  }
  console.log(`tools/call body ${call.length} B; tools/list answer ${listAnswer.length} B (200 tools, ${kept} kept)\n`)
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
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) microBench()
