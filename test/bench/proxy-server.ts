import { join } from 'node:path'
import type { LookupFunction } from 'node:net'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { startBare } from './bare.js'

/**
 * Bench child: one proxy under test in its own process (so its RSS and CPU are its own).
 * `sidekey`: the real app from a YAML config, logger to a file through pino's async destination, metrics on.
 * `bare`: the minimal forwarder of bare.ts, with a CA of its own for interception.
 * IPC: receives a ProxyStart, answers `{ port, caPem }`; then `'rss'` → `{ rss, cpuUs }`, `'stop'` → exits.
 */

export interface ProxyStart {
  kind: 'sidekey' | 'bare'
  dir: string
  httpPort: number
  httpsPort: number
  upstreamCaFile: string
  upstreamCaPem: string
  /** sidekey only: seal the log into the audit hash chain (default true; false to measure what it costs). */
  chain?: boolean
  /** Sign a token for every call (`per_call: true`) with this algorithm, instead of one pooled ES256 token. */
  perCall?: 'ES256' | 'EdDSA'
  /** The `mcp` section's MCP server stand-in: two tools on it, one with `mcp:` (mcp.ts), one without. */
  mcpPort?: number
}

export const HTTP_HOST = 'plain.bench.test'
export const HTTPS_HOST = 'api.bench.test'
/** Names under the config's wildcard tool: no leaf until an agent first connects to one. */
export const FRESH_HOST = 'new.fresh.bench.test'
export const WARM_HOST = 'warm.fresh.bench.test'
/** The `mcp` section (mcp.ts): a tool with `mcp:` allowing these, and one without, on the same MCP server. */
export const MCP_HOST = 'mcp.bench.test'
export const MCP_PLAIN_HOST = 'mcpplain.bench.test'
export const MCP_BENCH_TOOLS = ['get_*', 'search_code', 'tool_1?']

export function sidekeyYaml (s: ProxyStart): string {
  const perCall = s.perCall === undefined ? '' : '\n    per_call: true'
  return `
instance_id: bench
ca: { dir: ${join(s.dir, 'ca')} }
upstream_ca_file: ${s.upstreamCaFile}
resolve:
  ${HTTPS_HOST}: 127.0.0.1
  ${HTTP_HOST}: 127.0.0.1
  ${FRESH_HOST}: 127.0.0.1
  ${WARM_HOST}: 127.0.0.1
  ${MCP_HOST}: 127.0.0.1
  ${MCP_PLAIN_HOST}: 127.0.0.1
limits:
  max_connections: 4096
  # The 256-connection cell would otherwise meet the per-upstream cap (64 connections + 128 pending) by design.
  upstream_pending: 1024
issuers:
  local: { type: local_jwt, ttl: 10m, issuer: https://sidekey.bench${s.perCall === undefined ? '' : `, alg: ${s.perCall}`} }
tools:${s.mcpPort === undefined ? '' : mcpTools(s.mcpPort)}
  api:
    match: { host: ${HTTPS_HOST}, port: ${s.httpsPort} }
    issuer: local
    scopes: [read]
    audience: https://${HTTPS_HOST}
    placeholder: sidekey${perCall}
  fresh:
    match: { host: '*.fresh.bench.test', port: ${s.httpsPort} }
    issuer: local
    scopes: [read]
    placeholder: sidekey
  plain:
    match: { host: ${HTTP_HOST}, port: ${s.httpPort} }
    issuer: local
    scopes: [read]
    plaintext: true
    placeholder: sidekey${perCall}
`
}

function mcpTools (port: number): string {
  const tool = (name: string, host: string, mcp: string): string =>
    `\n  ${name}: { match: { host: ${host}, port: ${port} }, issuer: local, plaintext: true, placeholder: sidekey${mcp} }`
  return tool('mcp', MCP_HOST, `, mcp: { tools: ${JSON.stringify(MCP_BENCH_TOOLS)} }`) + tool('mcp-plain', MCP_PLAIN_HOST, '')
}

/** Every bench name is on loopback. */
export const loopbackLookup = ((_host: string, opts: unknown, cb?: unknown) => {
  const callback = (typeof opts === 'function' ? opts : cb) as (err: null, address: string | Array<{ address: string, family: number }>, family?: number) => void
  if (typeof opts === 'object' && opts !== null && (opts as { all?: boolean }).all === true) callback(null, [{ address: '127.0.0.1', family: 4 }])
  else callback(null, '127.0.0.1', 4)
}) as LookupFunction

async function start (s: ProxyStart): Promise<{ port: number, caPem: string, stop: () => Promise<void> }> {
  if (s.kind === 'sidekey') {
    // Imported here, not at the top: the bare child must not carry sidekey's modules in its RSS.
    const [{ pino }, { Sidekey }, { parseConfig }, { createLogger, flushLogger }] = await Promise.all([
      import('pino'), import('../../src/app.js'), import('../../src/config/load.js'), import('../../src/audit/log.js'),
    ])
    const config = parseConfig(sidekeyYaml(s), 'bench.yaml', {})
    const chain = s.chain !== false
    const logger = createLogger({ level: 'info', chain, destination: pino.destination({ dest: join(s.dir, chain ? 'audit.log' : 'audit-unchained.log'), sync: false, mkdir: true }) })
    const app = await Sidekey.start({ config, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger })
    return {
      port: Number(app.proxyAddress.split(':').pop()),
      caPem: app.ca.certPem,
      stop: async () => { await app.close(); await flushLogger(logger) },
    }
  }
  const ca = await loadOrCreateCa({ dir: join(s.dir, 'bare-ca'), validityMs: 30 * 86_400_000 })
  const bare = await startBare(ca, s.upstreamCaPem, loopbackLookup)
  return { port: bare.port, caPem: ca.certPem, stop: () => bare.close() }
}

if (process.send !== undefined) {
  process.once('message', (s: ProxyStart) => {
    start(s).then((p) => {
      process.on('message', (m: string) => {
        if (m === 'rss') {
          const cpu = process.cpuUsage()
          process.send!({ rss: process.memoryUsage.rss(), cpuUs: cpu.user + cpu.system })
        }
        if (m === 'stop') void p.stop().finally(() => process.exit(0))
      })
      process.on('disconnect', () => process.exit(0))
      process.send!({ port: p.port, caPem: p.caPem })
    }, (err: unknown) => {
      process.send!({ error: String(err) })
      process.exit(1)
    })
  })
}
