import t from 'tap'
import { checkMcpRequest } from '../../src/mcp/check.js'
import { matcher, type McpPolicy } from '../../src/mcp/policy.js'
import { mcpResponseFilter } from '../../src/mcp/response.js'

const policy: McpPolicy = { tools: matcher(['get_*']) }
const check = checkMcpRequest(policy, {}, Buffer.from('{"jsonrpc":"2.0","id":7,"method":"tools/list"}'))
const answer = JSON.stringify({ jsonrpc: '2.0', id: 7, result: { tools: [{ name: 'get_a' }, { name: 'drop_b' }], nextCursor: 'c2' } })

t.test('SSE: events before the list answer pass as they come; the answer keeps its id field and nextCursor', async (t) => {
  const filter = mcpResponseFilter(policy, check, 'text/event-stream; charset=utf-8')!
  const progress = 'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\r\n\r\n'
  t.equal(filter.push(Buffer.from(progress)).toString(), progress, 'a whole event is sent on at once, unchanged')
  const list = `id: 9\ndata: ${answer}\n\n`
  const half = Math.floor(list.length / 2)
  t.equal(filter.push(Buffer.from(list.slice(0, half))).length, 0, 'half an event is held')
  const out = filter.push(Buffer.from(list.slice(half))).toString() + filter.end().toString()
  t.match(out, /^id: 9\n/)
  const data = JSON.parse(out.split('\n').find((l) => l.startsWith('data: '))!.slice(6)) as { result: { tools: Array<{ name: string }>, nextCursor: string } }
  t.same(data.result.tools.map((x) => x.name), ['get_a'])
  t.equal(data.result.nextCursor, 'c2')
})

t.test('SSE byte by byte, a CR split from its LF, and JSON answers', async (t) => {
  const filter = mcpResponseFilter(policy, check, 'text/event-stream')!
  const list = `data: ${answer}\r\n\r\n`
  let out = ''
  for (const b of Buffer.from(list)) out += filter.push(Buffer.from([b])).toString()
  out += filter.end().toString()
  t.notMatch(out, /drop_b/)
  const json = mcpResponseFilter(policy, check, 'application/json')!
  const sent = Buffer.concat([json.push(Buffer.from(answer.slice(0, 10))), json.push(Buffer.from(answer.slice(10))), json.end()]).toString()
  t.same((JSON.parse(sent) as { result: { tools: unknown[] } }).result.tools, [{ name: 'get_a' }])
  t.equal(mcpResponseFilter(policy, checkMcpRequest(policy, {}, Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping"}')), 'application/json'), undefined, 'no list asked: no filter')
})
