import t from 'tap'
import fc from 'fast-check'
import { checkMcpRequest } from '../../src/mcp/check.js'
import { matcher, type McpPolicy } from '../../src/mcp/policy.js'

const policy: McpPolicy = { tools: matcher(['get_issue', 'search_*']) }
const NAMES = ['get_issue', 'search_code', 'delete_repo', 'get_issuE', 'get_issue ', 'search', 'xsearch_a']

/** A string as a JSON string literal, each character plain or \u-escaped. */
const spelled = (s: string): fc.Arbitrary<string> => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length })
  .map((esc) => '"' + [...s].map((c, i) => esc[i] === true ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : JSON.stringify(c).slice(1, -1)).join('') + '"')
const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ')

/** One object from members [key, value text], in any order, spaced any way, with an optional repeat of one member. */
const object = (members: Array<fc.Arbitrary<[string, string]>>, repeat: fc.Arbitrary<[string, string] | undefined>): fc.Arbitrary<string> =>
  fc.tuple(fc.tuple(...members), repeat, ws, ws).chain(([ms, extra, a, b]) =>
    fc.shuffledSubarray(extra === undefined ? ms : [...ms, extra], { minLength: ms.length + (extra === undefined ? 0 : 1) })
      .chain((order) => fc.tuple(...order.map(([k, v]) => spelled(k).map((key) => `${a}${key}${b}:${a}${v}`))))
      .map((parts) => `{${parts.join(',')}}`))

const member = (key: string, value: fc.Arbitrary<string>): fc.Arbitrary<[string, string]> => value.map((v) => [key, v])
const toolCall = fc.tuple(fc.constantFrom(...NAMES), fc.constantFrom(...NAMES), fc.boolean(), fc.nat(99)).chain(([name, other, repeatName, id]) => {
  const params = object([member('name', spelled(name)), member('arguments', fc.constant('{}'))],
    fc.constant(repeatName ? ['name', JSON.stringify(other)] as [string, string] : undefined))
  return object([member('jsonrpc', fc.constant('"2.0"')), member('id', fc.constant(String(id))),
    member('method', spelled('tools/call')), member('params', params)], fc.constantFrom(undefined, ['method', '"tools/list"'] as [string, string]))
})
const body = fc.oneof(toolCall, fc.array(toolCall, { minLength: 1, maxLength: 3 }).map((ms) => `[${ms.join(',')}]`))

t.test('no spelling of a request gets a refused tool through, and the server reads what was checked', async (t) => {
  fc.assert(fc.property(body, (text) => {
    const check = checkMcpRequest(policy, {}, Buffer.from(text))
    if (check.refusal !== undefined) return true
    // Allowed: the server's parser (JSON.parse, last member wins) must see the names sidekey judged, all allowed.
    const parsed = JSON.parse(text) as unknown
    const messages = (Array.isArray(parsed) ? parsed : [parsed]) as Array<{ method: string, params: { name: string } }>
    const judged = check.call?.batch ?? [check.call!]
    return messages.every((m, i) => m.method === 'tools/call' && policy.tools.allows(m.params.name) &&
      judged[i]?.name === m.params.name)
  }), { numRuns: 2000 })
  t.pass('2000 spellings')
})

t.test('a repeated member is refused under any spelling of its name', async (t) => {
  const text = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_issue","n\\u0061me":"delete_repo"}}'
  t.match(checkMcpRequest(policy, {}, Buffer.from(text)).refusal, { status: 400, outcome: 'bad_request' })
  const lone = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_\\ud800"}}'
  t.match(checkMcpRequest(policy, {}, Buffer.from(lone)).refusal, { status: 400 }, 'a lone surrogate is read differently by some parsers')
  t.match(checkMcpRequest(policy, {}, Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('{}')])).refusal, { status: 400 }, 'a byte order mark')
})
