import t from 'tap'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { startSidekey } from '../helpers/sidekey.js'
import { connectThrough, startMcpUpstream } from '../helpers/mcp.js'
import { auditLine } from '../protocols/helpers.js'

/**
 * `per_call` on an MCP tool: each call's token names the JSON-RPC call it was signed for (`mcp_method`, and
 * `mcp_tool` for a `tools/call`), so the MCP server can refuse a token that came with another call. The server here
 * is the SDK's own; it verifies each token against sidekey's JWKS and its tools check `mcp_tool` is their name.
 */
for (const mode of ['json', 'sse'] as const) {
  t.test(`a per-call token names the MCP call it came with, ${mode} answers`, async (t) => {
    const sidekeyKeys: { jwks?: ReturnType<typeof createRemoteJWKSet> } = {}
    const up = await startMcpUpstream(async (authorization) => {
      const jwks = sidekeyKeys.jwks
      if (jwks === undefined || authorization?.startsWith('Bearer ') !== true) return undefined
      const token = authorization.slice('Bearer '.length)
      const { payload } = await jwtVerify(token, jwks, { issuer: 'https://sidekey.test' })
      return payload as Record<string, unknown>
    }, mode === 'json')
    t.teardown(() => up.close())
    const sk = await startSidekey(t, `
instance_id: mcp-per-call
ca: { dir: {{CA_DIR}} }
resolve: { mcp.call.test: 127.0.0.1 }
issuers: { signer: { type: local_jwt, issuer: https://sidekey.test } }
tools:
  mcp-signed:
    match: { host: mcp.call.test, port: ${up.port} }
    issuer: signer
    plaintext: true
    per_call: true
    mcp: { tools: [get_issue, "search_*"] }
`)
    sidekeyKeys.jwks = createRemoteJWKSet(new URL(`${sk.adminUrl}/.well-known/jwks.json`))
    const client = await connectThrough(sk.proxyUrl, `http://mcp.call.test:${up.port}/mcp`)
    t.teardown(() => client.close())

    const issue = await client.callTool({ name: 'get_issue', arguments: { q: '42' } })
    t.notOk(issue.isError, `the server accepted the token for get_issue: ${JSON.stringify(issue.content)}`)
    const search = await client.callTool({ name: 'search_code', arguments: { q: 'x' } })
    t.notOk(search.isError, `the server accepted the token for search_code: ${JSON.stringify(search.content)}`)
    await client.listTools()

    const calls = up.claims.filter((c) => c.mcp_method === 'tools/call')
    t.match(calls, [
      { mcp_method: 'tools/call', mcp_tool: 'get_issue', htm: 'POST', tool: 'mcp-signed' },
      { mcp_method: 'tools/call', mcp_tool: 'search_code', htm: 'POST', tool: 'mcp-signed' },
    ], 'each tools/call token names its MCP tool')
    const list = up.claims.find((c) => c.mcp_method === 'tools/list')
    t.ok(list !== undefined && !('mcp_tool' in list), 'a tools/list token names its method and no tool')
    t.equal(new Set(up.claims.map((c) => c.jti)).size, up.claims.length, 'every call had its own token')

    const used = await auditLine(sk.log, (e) => e.event === 'credential.used' && e.credential_id === calls[0]?.jti)
    t.match(used, { mcp: { method: 'tools/call', name: 'get_issue' }, status: 200 }, 'the audit names the same call')
    const tokens = up.authorizations.map((a) => String(a).slice('Bearer '.length))
    t.notOk(tokens.some((token) => sk.log.text.includes(token)), 'no token is logged')
  })
}
