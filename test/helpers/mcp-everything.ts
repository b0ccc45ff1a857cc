import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'

export interface SessionUpstream {
  port: number
  /** `params.name` of every `tools/call` the server was handed. */
  calledTools: string[]
  /** The Authorization header of every request. */
  authorizations: Array<string | undefined>
  close: () => Promise<void>
}

// The package ships no type declarations for its server factory.
const EVERYTHING: string = '@modelcontextprotocol/server-everything/dist/server/index.js'
const { createServer: createEverything } = await import(EVERYTHING) as { createServer: () => { server: McpServer } }

/**
 * An MCP server with sessions on 127.0.0.1, as server-everything's own Streamable HTTP entry runs it (a server
 * per session, made by `factory`: by default server-everything, the MCP reference server), answering only
 * requests whose Authorization header is `authorization`; over HTTPS with `tls`.
 */
export async function startEverything (authorization: string, factory: () => { server: McpServer } = createEverything,
  tls?: { certPem: string, keyPem: string }): Promise<SessionUpstream> {
  const sessions = new Map<string, StreamableHTTPServerTransport>()
  const calledTools: string[] = []
  const authorizations: Array<string | undefined> = []
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      authorizations.push(req.headers.authorization)
      if (req.headers.authorization !== authorization) {
        res.writeHead(401).end()
        return
      }
      const id = req.headers['mcp-session-id'] as string | undefined
      let transport = id === undefined ? undefined : sessions.get(id)
      let body: unknown
      if (req.method === 'POST') {
        const chunks: Buffer[] = []
        for await (const c of req) chunks.push(c as Buffer)
        body = JSON.parse(Buffer.concat(chunks).toString())
        const m = body as { method?: string, params?: { name?: string } }
        if (m.method === 'tools/call') calledTools.push(m.params!.name!)
      }
      if (transport === undefined) {
        const { server } = factory()
        const fresh = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (sid) => { sessions.set(sid, fresh) },
        })
        transport = fresh
        await server.connect(transport)
      }
      await transport.handleRequest(req, res, body)
    })()
  }
  const http = tls === undefined
    ? createServer(onRequest)
    : createTlsServer({ cert: tls.certPem, key: tls.keyPem }, onRequest)
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  return {
    port: (http.address() as AddressInfo).port,
    calledTools,
    authorizations,
    close: async () => {
      for (const s of sessions.values()) await s.close()
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    },
  }
}
