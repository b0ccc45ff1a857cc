import type { ServerResponse } from 'node:http'
import type { UpstreamHandler } from './upstream.js'

/** The usage each stand-in answer reports, and the tokens sidekey should count for it. */
export const USAGE = {
  chat: { prompt_tokens: 100, completion_tokens: 23, total_tokens: 123 },
  responses: { input_tokens: 200, output_tokens: 45, total_tokens: 245 },
  messages: { input_tokens: 300, output_tokens: 67 },
} as const
export const COUNTED = { chat: 123, responses: 245, messages: 367 } as const

/**
 * A stand-in LLM API: OpenAI Chat Completions and Responses, Anthropic Messages, each as one JSON answer or as an
 * SSE stream (`"stream": true`), with usage where the real API puts it. A chat stream carries usage only when
 * asked (`stream_options.include_usage`), as OpenAI's does.
 */
export const llm: UpstreamHandler = (req, res, seen) => {
  type Body = { stream?: boolean, stream_options?: { include_usage?: boolean } }
  const body = JSON.parse(seen.body.toString() || '{}') as Body
  const path = (req.url ?? '').split('?')[0]
  const withUsage = body.stream_options?.include_usage === true
  if (path === '/v1/chat/completions') return chat(res, body.stream === true, withUsage)
  if (path === '/v1/responses') return responses(res, body.stream === true)
  if (path === '/v1/messages') return messages(res, body.stream === true)
  res.writeHead(404).end()
}

function chat (res: ServerResponse, stream: boolean, withUsage: boolean): void {
  const base = { id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-test' }
  if (!stream) {
    const message = { role: 'assistant', content: 'say "total_tokens": 999999' }
    return json(res, { ...base, choices: [{ index: 0, message, finish_reason: 'stop' }], usage: USAGE.chat })
  }
  const chunk = { ...base, object: 'chat.completion.chunk' }
  const noUsage = withUsage ? { usage: null } : {}
  const events = ['Hel', 'lo', ' "prompt_tokens": 77777']
    .map((content) => ({ ...chunk, choices: [{ index: 0, delta: { content }, finish_reason: null }], ...noUsage }))
  events.push({ ...chunk, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], ...noUsage } as never)
  if (withUsage) events.push({ ...chunk, choices: [], usage: USAGE.chat } as never)
  sse(res, events.map((e) => `data: ${JSON.stringify(e)}\n\n`).concat('data: [DONE]\n\n'))
}

function responses (res: ServerResponse, stream: boolean): void {
  const content = [{ type: 'output_text', text: 'hi', annotations: [] }]
  const output = [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content }]
  const response = { id: 'resp_1', object: 'response', created_at: 1, model: 'gpt-test', status: 'completed', output }
  const details = { input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } }
  if (!stream) return json(res, { ...response, usage: { ...USAGE.responses, ...details } })
  const events = [
    { type: 'response.created', sequence_number: 0, response: { ...response, output: [], usage: null } },
    { type: 'response.output_text.delta', sequence_number: 1, item_id: 'msg_1', content_index: 0, delta: 'hi' },
    { type: 'response.completed', sequence_number: 2, response: { ...response, usage: USAGE.responses } },
  ]
  sse(res, events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`))
}

function messages (res: ServerResponse, stream: boolean): void {
  const message = { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-test', stop_reason: null }
  const text = [{ type: 'text', text: 'hi' }]
  if (!stream) return json(res, { ...message, content: text, stop_reason: 'end_turn', usage: USAGE.messages })
  const { input_tokens: input, output_tokens: output } = USAGE.messages
  const events: Array<[string, unknown]> = [
    ['message_start', {
      type: 'message_start', message: { ...message, content: [], usage: { input_tokens: input, output_tokens: 1 } },
    }],
    ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
    ['content_block_delta', { type: 'content_block_delta', delta: { type: 'text_delta', text: '"output_tokens": 5' } }],
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: output } }],
    ['message_stop', { type: 'message_stop' }],
  ]
  sse(res, events.map(([name, data]) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`))
}

function json (res: ServerResponse, value: unknown): void {
  const text = JSON.stringify(value)
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/** Each event written on its own, so the proxy sees the stream in pieces. */
function sse (res: ServerResponse, events: readonly string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  let i = 0
  const next = (): void => {
    if (i === events.length) {
      res.end()
      return
    }
    res.write(events[i++])
    setImmediate(next)
  }
  next()
}
