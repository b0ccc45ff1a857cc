import { z } from 'zod'
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js'
import { CompleteRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js'

/**
 * An MCP server with the tools, resources and prompts the conformance suite's server scenarios call
 * (`conformance list`), written against their checks: content of each kind, logging and progress notifications
 * while a tool runs, sampling and elicitation requests back to the client, an erroring tool. Served by
 * `startEverything` (test/helpers/mcp-everything.ts) in place of the reference server.
 */
export function conformanceServer (): { server: McpServer } {
  const server = new McpServer({ name: 'conformance-style', version: '1.0.0' },
    { capabilities: { logging: {}, completions: {}, resources: { subscribe: true } } })
  const results: Record<string, CallToolResult['content']> = {
    test_simple_text: [{ type: 'text', text: 'This is a simple text response for testing.' }],
    test_image_content: [IMAGE],
    test_audio_content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }],
    test_embedded_resource: [EMBEDDED],
    test_multiple_content_types: [{ type: 'text', text: 'Multiple content types test:' }, IMAGE, EMBEDDED],
  }
  for (const [name, content] of Object.entries(results)) {
    server.registerTool(name, { description: name }, async () => ({ content }))
  }
  server.registerTool('test_error_handling', { description: 'always fails' }, async () => {
    throw new Error('This tool intentionally returns an error for testing')
  })
  server.registerTool('test_tool_with_logging', { description: 'logs three lines', inputSchema: {} },
    async (_args, extra) => {
      for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } })
      }
      return { content: [{ type: 'text', text: 'Tool with logging executed successfully' }] }
    })
  server.registerTool('test_tool_with_progress', { description: 'reports progress', inputSchema: {} },
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken ?? 0
      for (const progress of [0, 50, 100]) {
        const params = { progressToken, progress, total: 100 }
        await extra.sendNotification({ method: 'notifications/progress', params })
      }
      return { content: [{ type: 'text', text: String(progressToken) }] }
    })
  server.registerTool('test_sampling', { description: 'asks for a sample', inputSchema: { prompt: z.string() } },
    async ({ prompt }) => {
      const answer = await server.server.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100,
      })
      const text = answer.content.type === 'text' ? answer.content.text : 'No response'
      return { content: [{ type: 'text', text: `LLM response: ${text}` }] }
    })
  server.registerTool('test_elicitation', { description: 'asks the user', inputSchema: { message: z.string() } },
    async ({ message }) => {
      const answer = await server.server.elicitInput({
        message,
        requestedSchema: { type: 'object', properties: { response: { type: 'string' } }, required: ['response'] },
      })
      const text = `User response: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`
      return { content: [{ type: 'text', text }] }
    })
  registerResources(server)
  registerPrompts(server)
  const noCompletions = { completion: { values: [], total: 0, hasMore: false } }
  server.server.setRequestHandler(CompleteRequestSchema, async () => noCompletions)
  return { server }
}

function registerResources (server: McpServer): void {
  server.registerResource('static-text', 'test://static-text', { mimeType: 'text/plain' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
  }))
  server.registerResource('static-binary', 'test://static-binary', { mimeType: 'image/png' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG }],
  }))
  server.registerResource('watched-resource', 'test://watched-resource', { mimeType: 'text/plain' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content' }],
  }))
  const template = new ResourceTemplate('test://template/{id}/data', { list: undefined })
  server.registerResource('template', template, { mimeType: 'application/json' }, async (uri, { id }) => ({
    contents: [{
      uri: uri.href,
      mimeType: 'application/json',
      text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${String(id)}` }),
    }],
  }))
  for (const method of ['resources/subscribe', 'resources/unsubscribe']) {
    server.server.setRequestHandler(z.object({ method: z.literal(method) }).passthrough(), async () => ({}))
  }
}

function registerPrompts (server: McpServer): void {
  const user = (content: Record<string, unknown>): { role: 'user', content: never } =>
    ({ role: 'user', content: content as never })
  server.registerPrompt('test_simple_prompt', { description: 'no arguments' }, () => ({
    messages: [user({ type: 'text', text: 'This is a simple prompt for testing.' })],
  }))
  const twoArgs = { arg1: z.string(), arg2: z.string() }
  server.registerPrompt('test_prompt_with_arguments', { description: 'two arguments', argsSchema: twoArgs },
    ({ arg1, arg2 }) => {
      const text = `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`
      return { messages: [user({ type: 'text', text })] }
    })
  const uriArg = { resourceUri: z.string() }
  server.registerPrompt('test_prompt_with_embedded_resource', { description: 'a resource', argsSchema: uriArg },
    ({ resourceUri }) => ({
      messages: [
        user({
          type: 'resource',
          resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
        }),
        user({ type: 'text', text: 'Please process the embedded resource above.' }),
      ],
    }))
  server.registerPrompt('test_prompt_with_image', { description: 'an image' }, () => ({
    messages: [user(IMAGE), user({ type: 'text', text: 'Please analyze the image above.' })],
  }))
}

// The reference server's tiny PNG (the package ships no type declarations), and one 16-bit mono sample as WAV.
const TINY_IMAGE: string = '@modelcontextprotocol/server-everything/dist/tools/get-tiny-image.js'
const PNG = (await import(TINY_IMAGE) as { MCP_TINY_IMAGE: string }).MCP_TINY_IMAGE
const WAV = wavOfOneSample()
const IMAGE = { type: 'image' as const, data: PNG, mimeType: 'image/png' }
const EMBEDDED = {
  type: 'resource' as const,
  resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
}

function wavOfOneSample (): string {
  const b = Buffer.alloc(46)
  b.write('RIFF', 0)
  b.writeUInt32LE(38, 4)
  b.write('WAVEfmt ', 8)
  b.writeUInt32LE(16, 16) // PCM header length
  b.writeUInt16LE(1, 20) // PCM
  b.writeUInt16LE(1, 22) // mono
  b.writeUInt32LE(8000, 24) // samples a second
  b.writeUInt32LE(16000, 28) // bytes a second
  b.writeUInt16LE(2, 32) // bytes a frame
  b.writeUInt16LE(16, 34) // bits a sample
  b.write('data', 36)
  b.writeUInt32LE(2, 40)
  return b.toString('base64')
}
