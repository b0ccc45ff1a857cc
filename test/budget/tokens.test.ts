import t, { type Test } from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { fetch as undiciFetch, ProxyAgent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { COUNTED, llm } from '../helpers/llm.js'
import { until } from '../helpers/until.js'

const SECRET = 'sk-real-llm-secret-abcdef0123456789'
const up = await startUpstream({ handler: llm })
t.teardown(() => up.close())
const dir = mkdtempSync(join(tmpdir(), 'sidekey-tokens-'))
writeFileSync(join(dir, 'key'), `${SECRET}\n`)

const ASK = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'hi' }] }
const HOSTS = ['chat-json', 'chat-sse', 'chat-bare', 'resp-json', 'resp-sse', 'msg-json', 'msg-sse'] as const
const LIMIT = 1000
const sk = await startSidekey(t, `
instance_id: tokens-test
ca: { dir: {{CA_DIR}} }
resolve: { ${HOSTS.map((h) => `${h}.test: 127.0.0.1`).join(', ')} }
issuers: { key: { type: file, path: ${join(dir, 'key')} } }
tools:
${HOSTS.map((h) => `  ${h}: { match: { host: ${h}.test, port: ${up.port} }, issuer: key, plaintext: true,
    budget: [{ tokens: ${LIMIT}, per: 24h }] }`).join('\n')}
`)
const agent = new ProxyAgent(sk.proxyUrl)
t.teardown(() => agent.close())

function openai (host: string): OpenAI {
  return new OpenAI({
    apiKey: 'placeholder',
    baseURL: `http://${host}.test:${up.port}/v1`,
    maxRetries: 0,
    fetch: (input, init) =>
      undiciFetch(input as string, { ...(init as object), dispatcher: agent }) as unknown as Promise<Response>,
  })
}

async function remaining (tool: string): Promise<number> {
  const lines = (await sk.app.metrics.text()).split('\n')
  const line = lines.find((l) => l.startsWith(`sidekey_budget_remaining{tool="${tool}",`))
  return Number(line?.split(' ').pop())
}

/** Each tool's count is settled when its exchange ends, just after the agent has the last byte. */
async function counted (t: Test, tool: string, tokens: number): Promise<void> {
  const left = Math.max(0, LIMIT - tokens)
  await until(async () => await remaining(tool) === left, `${tool} at ${left}`)
  t.equal(await remaining(tool), left, `${tool}: ${tokens} tokens counted`)
}

t.test('OpenAI Chat Completions, JSON: total_tokens counted (not the model\'s text); past it, 429', async (t) => {
  const client = openai('chat-json')
  const ask = async (): Promise<OpenAI.ChatCompletion> => await client.chat.completions.create(ASK)
  const answer = await ask()
  t.equal(answer.usage?.total_tokens, COUNTED.chat, 'the agent got the usage untouched')
  await counted(t, 'chat-json', COUNTED.chat)
  for (let i = 1; i < 9; i++) await ask()
  await counted(t, 'chat-json', 9 * COUNTED.chat)
  const before = up.seen.length
  // 1107 spent: the ninth call crossed the limit while running (never cut); the tenth may not start.
  const err = await ask().catch((e: unknown) => e)
  t.ok(err instanceof OpenAI.RateLimitError, 'the SDK sees a rate limit')
  t.equal((err as InstanceType<typeof OpenAI.APIError>).status, 429)
  t.ok(Number((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')) >= 1)
  t.equal(up.seen.length, before, 'the refused call never reached the upstream')
  t.ok(up.seen.every((s) => s.headers.authorization === `Bearer ${SECRET}`), 'every call went out with the real key')
  const refused = (): Record<string, unknown> | undefined =>
    sk.log.events('credential.used').find((e) => e.tool === 'chat-json' && e.outcome === 'budget_exhausted')
  await until(() => refused() !== undefined, 'audit')
  t.match(refused(), { status: 429, budget: 'tokens:1000/1d/instance' })
  t.notOk(sk.log.text.includes(SECRET))
})

t.test('OpenAI Chat Completions, streamed with include_usage: the final usage chunk counted', async (t) => {
  const stream = await openai('chat-sse').chat.completions.create({
    ...ASK, stream: true, stream_options: { include_usage: true },
  })
  let text = ''
  let usage: number | undefined
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? ''
    usage ??= chunk.usage?.total_tokens
  }
  t.equal(text, 'Hello "prompt_tokens": 77777')
  t.equal(usage, COUNTED.chat)
  await counted(t, 'chat-sse', COUNTED.chat)
})

t.test('OpenAI Chat Completions, streamed without include_usage: a quarter token per byte relayed', async (t) => {
  const stream = await openai('chat-bare').chat.completions.create({ ...ASK, stream: true })
  for await (const chunk of stream) t.equal(chunk.usage, undefined)
  await until(async () => await remaining('chat-bare') < LIMIT, 'an estimate')
  const spent = LIMIT - await remaining('chat-bare')
  t.ok(spent > 50 && spent < 400, `estimated ${spent} tokens from the stream's bytes)`)
})

t.test('OpenAI Responses API, JSON and streamed: input_tokens + output_tokens', async (t) => {
  const json = await openai('resp-json').responses.create({ model: 'gpt-test', input: 'hi' })
  t.equal(json.usage?.input_tokens, 200)
  await counted(t, 'resp-json', COUNTED.responses)
  const stream = await openai('resp-sse').responses.create({ model: 'gpt-test', input: 'hi', stream: true })
  const types: string[] = []
  for await (const event of stream) types.push(event.type)
  t.same(types, ['response.created', 'response.output_text.delta', 'response.completed'])
  await counted(t, 'resp-sse', COUNTED.responses)
})

t.test('Anthropic Messages, JSON and streamed (message_start input, message_delta output)', async (t) => {
  const post = async (host: string, stream: boolean): Promise<string> => {
    const res = await request(`http://${host}.test:${up.port}/v1/messages`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'x-api-key': 'placeholder', 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-test', max_tokens: 100, messages: ASK.messages, stream }),
    })
    t.equal(res.statusCode, 200)
    return await res.body.text()
  }
  t.match(await post('msg-json', false), /"output_tokens":67/)
  await counted(t, 'msg-json', COUNTED.messages)
  const events = await post('msg-sse', true)
  t.match(events, /event: message_delta/)
  await counted(t, 'msg-sse', COUNTED.messages)
  await post('msg-sse', true)
  await counted(t, 'msg-sse', 2 * COUNTED.messages)
  const streamed = { method: 'POST' as const, dispatcher: agent, body: '{"stream":true}' }
  const third = await request(`http://msg-sse.test:${up.port}/v1/messages`, streamed)
  t.equal(third.statusCode, 200, '734 of 1000 spent: a token is left, so the call starts')
  await third.body.text()
  await counted(t, 'msg-sse', 3 * COUNTED.messages)
  const fourth = await request(`http://msg-sse.test:${up.port}/v1/messages`, streamed)
  t.equal(fourth.statusCode, 429, '1101 spent: the next call is refused')
  t.match(await fourth.body.json(), { error: 'budget_exhausted', budget: 'tokens:1000/1d/instance' })
})
