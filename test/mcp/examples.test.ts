// The remote MCP server examples in config/examples/mcp/ are configs sidekey accepts, and do what their headers
// say when run as shipped against a local stand-in for the server: the agent sends the placeholder in the header
// the example names, the server reads the real token in the form it expects, tools/list offers the allowlist
// only, and a write tool is refused before the server sees it.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parse, stringify } from 'yaml'
import { fetch as undiciFetch, ProxyAgent } from 'undici'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { cli } from '../helpers/cli.js'
import { startSidekey } from '../helpers/sidekey.js'
import { startEverything } from '../helpers/mcp-everything.js'
import { upstreamPki } from '../helpers/upstream.js'
import { readRepoFile, repoPath, type Obj } from '../deploy/helpers.js'

const DIR = 'config/examples/mcp'
const names = readdirSync(repoPath(DIR)).filter((f) => f.endsWith('.yaml')).sort()
// Each example: a write tool of its server that the agent is refused, and the Authorization the server's docs say
// it takes a token in (github/github-mcp-server's README; getsentry/sentry-mcp's, where `Bearer` is its own OAuth).
const SERVERS: Record<string, { write: string, takes: string }> = {
  'github-mcp.yaml': { write: 'issue_write', takes: 'Bearer {token}' },
  'sentry-mcp.yaml': { write: 'update_issue', takes: 'Sentry-Bearer {token}' },
}

t.test('the MCP examples are the ones this test knows, and each passes `sidekey check --no-files`', async (t) => {
  t.same(names, Object.keys(SERVERS).sort())
  const results = await Promise.all(names.map((name) => cli(['check', '--no-files', '--config', `${DIR}/${name}`])))
  names.forEach((name, i) => {
    const { code, stdout, stderr } = results[i]!
    t.equal(code, 0, `${name}: ${stdout}${stderr}`)
    t.equal(stderr, '', `${name}: no warning`)
  })
})

for (const name of names) {
  const title = `${name}: read tools run with the real token, ${SERVERS[name]?.write} refused as its header says`
  t.test(title, async (t) => {
    const text = readRepoFile(`${DIR}/${name}`)
    const header = text.split('\n').filter((l) => l.startsWith('#')).join('\n')
    const cfg = parse(text) as Obj
    const [toolName, tool] = Object.entries(cfg.tools as Obj)[0]!
    const allowed = tool.mcp.tools as string[]
    const { write, takes } = SERVERS[name]!
    t.notOk(allowed.includes(write), `${write} is not in the allowlist`)
    t.match(header, `sidekey refused the MCP tool "${write}"`, 'the header quotes the refusal the agent reads')
    const format = (tool.inject?.format as string | undefined) ?? 'Bearer {token}'
    const agentAuthorization = format.replace('{token}', tool.placeholder as string)
    t.match(header, `"Authorization": "${agentAuthorization}"`, 'the header gives the agent its placeholder header')

    // The example as shipped, with its secret file, CA and host moved to this machine.
    const REAL = `real-${name}-token-5e1f`
    const host = tool.match.host as string
    const pki = await upstreamPki()
    const stand = (): { server: McpServer } => {
      const server = new McpServer({ name: `stand-in for ${host}`, version: '1.0.0' })
      for (const n of [...allowed, write]) {
        server.registerTool(n, { description: n }, async () => ({ content: [{ type: 'text', text: `${n} ran` }] }))
      }
      return { server }
    }
    const upstream = await startEverything(takes.replace('{token}', REAL), stand, await pki.cert(host))
    t.teardown(() => upstream.close())
    const dir = mkdtempSync(join(tmpdir(), 'sidekey-mcp-example-'))
    for (const [issuer, def] of Object.entries(cfg.issuers as Obj)) {
      def.path = join(dir, issuer)
      writeFileSync(def.path, REAL)
    }
    tool.match.port = upstream.port
    Object.assign(cfg, { ca: { dir: '{{CA_DIR}}' }, resolve: { [host]: '127.0.0.1' }, upstream_ca_file: pki.caFile })
    const sk = await startSidekey(t, stringify(cfg))

    const ca = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
    const dispatcher = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca } })
    t.teardown(() => dispatcher.close())
    const path = (tool.match.path_prefix as string).replace(/\/?$/, '/')
    const transport = new StreamableHTTPClientTransport(new URL(`https://${host}:${upstream.port}${path}`), {
      requestInit: { headers: { authorization: agentAuthorization } },
      fetch: (input, init) =>
        undiciFetch(input as string, { ...(init as object), dispatcher }) as unknown as Promise<Response>,
    })
    const client = new Client({ name: 'agent', version: '1.0.0' })
    await client.connect(transport)
    t.teardown(() => client.close())

    const offered = (await client.listTools()).tools.map((x) => x.name).sort()
    t.same(offered, [...allowed].sort(), 'tools/list offers the allowlist only')
    t.match((await client.callTool({ name: allowed[0]!, arguments: {} })).content, [{ text: `${allowed[0]} ran` }])
    const refused = await client.callTool({ name: write, arguments: {} })
    t.equal(refused.isError, true)
    t.match(refused.content, [{ type: 'text', text: `sidekey refused the MCP tool "${write}"` }])
    t.notOk(upstream.calledTools.includes(write), `${write} never reached the server`)
    t.ok(upstream.authorizations.every((a) => a === takes.replace('{token}', REAL)),
      `the server saw only the real token, as ${takes}`)
    const denied = sk.log.events('credential.used').find((e) => e.outcome === 'mcp_denied')
    t.match(denied, { tool: toolName, mcp: { name: write } })
    t.notOk(sk.log.text.includes(REAL))
  })
}
