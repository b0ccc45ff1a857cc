import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fetch as undiciFetch, ProxyAgent } from 'undici'
import { z } from 'zod'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'

/** Reads a request's Authorization header into the token's claims, or undefined to answer 401. */
export type McpTokenCheck = (authorization: string | undefined) => Promise<Record<string, unknown> | undefined>

export interface McpUpstream {
  port: number
  /** Every JSON-RPC message the server was handed, as it parsed them. */
  received: Array<Record<string, unknown>>
  /** The Authorization headers it saw. */
  authorizations: Array<string | undefined>
  /** With a token check: the claims of each token it accepted. */
  claims: Array<Record<string, unknown>>
  /** Opens the gate `gated_progress` waits behind after its first progress notification. */
  release: () => void
  close: () => Promise<void>
}

/**
 * The MCP SDK's own server (stateless Streamable HTTP, a fresh McpServer per request), answering only calls that
 * carry `Bearer ${token}`, or a token `token` (a check) accepts. `json` picks JSON answers over SSE streams. Tools:
 * get_issue, search_code, delete_repo, gated_progress (a progress notification, then its result once `release()` is
 * called). With a check, the tools refuse (`isError`) a token whose `mcp_tool` claim names another tool, as a server
 * relying on per-call tokens would.
 */
export async function startMcpUpstream (token: string | McpTokenCheck, json: boolean): Promise<McpUpstream> {
  const received: Array<Record<string, unknown>> = []
  const authorizations: Array<string | undefined> = []
  const claims: Array<Record<string, unknown>> = []
  let open: () => void = () => {}
  let gate = new Promise<void>((resolve) => { open = resolve })
  const mcpServer = (): McpServer => {
    const s = new McpServer({ name: 'test-upstream', version: '1.0.0' })
    for (const name of ['get_issue', 'search_code', 'delete_repo']) {
      s.registerTool(name, { description: name, inputSchema: { q: z.string().optional() } }, async (args, extra) => {
        const named = extra.authInfo?.extra?.mcp_tool
        if (extra.authInfo !== undefined && named !== name) {
          return { isError: true, content: [{ type: 'text', text: `the token names ${String(named)}, not ${name}` }] }
        }
        return { content: [{ type: 'text', text: `${name} ran with ${JSON.stringify(args)}` }] }
      })
    }
    s.registerTool('gated_progress', { description: 'progress, then a result' }, async (extra) => {
      const progressToken = extra._meta?.progressToken
      if (progressToken !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: 1, total: 2 } })
      }
      await gate
      return { content: [{ type: 'text', text: 'done' }] }
    })
    s.registerPrompt('triage', { description: 'triage' }, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'triage' } }] }))
    s.registerPrompt('secret_prompt', { description: 'secret' }, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'secret' } }] }))
    return s
  }
  const server: Server = createServer((req, res) => {
    void (async () => {
      authorizations.push(req.headers.authorization)
      const accepted = typeof token === 'string'
        ? (req.headers.authorization === `Bearer ${token}` ? {} : undefined)
        : await token(req.headers.authorization).catch(() => undefined)
      if (accepted === undefined) {
        res.writeHead(401, { 'www-authenticate': 'Bearer' }).end()
        return
      }
      if (typeof token !== 'string') {
        claims.push(accepted)
        const bearer = (req.headers.authorization ?? '').replace(/^Bearer /, '')
        const auth: AuthInfo = { token: bearer, clientId: 'sidekey', scopes: [], extra: accepted }
        Object.assign(req, { auth })
      }
      const body = req.method === 'POST' ? JSON.parse((await readAll(req)).toString()) as unknown : undefined
      for (const m of Array.isArray(body) ? body : body === undefined ? [] : [body]) received.push(m as Record<string, unknown>)
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: json })
      const s = mcpServer()
      res.on('close', () => { void transport.close(); void s.close() })
      await s.connect(transport)
      await transport.handleRequest(req, res, body)
    })()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    received,
    authorizations,
    claims,
    release: () => {
      open()
      gate = new Promise<void>((resolve) => { open = resolve })
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

async function readAll (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** The SDK's Streamable HTTP client, through sidekey (absolute-form), with the agent's placeholder bearer token. */
export async function connectThrough (proxyUrl: string, url: string, client = new Client({ name: 'sidekey-test', version: '1.0.0' })): Promise<Client> {
  const dispatcher = new ProxyAgent({ uri: proxyUrl, proxyTunnel: false })
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: 'Bearer placeholder' } },
    fetch: (input, init) => undiciFetch(input as string, { ...(init as object), dispatcher }) as unknown as Promise<Response>,
  })
  await client.connect(transport)
  return client
}

/** A sidekey config with one plaintext MCP tool on 127.0.0.1 whose credential is read from `tokenFile`. */
export function mcpToolYaml (host: string, port: number, tokenFile: string, mcp: string, extra = ''): string {
  return `
instance_id: mcp-test
ca: { dir: {{CA_DIR}} }
resolve: { ${host}: 127.0.0.1 }
issuers: { token: { type: file, path: ${tokenFile} } }${extra}
tools:
  mcp-tool: { match: { host: ${host}, port: ${port} }, issuer: token, plaintext: true, mcp: ${mcp} }
`
}
