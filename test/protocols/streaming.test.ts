import t from 'tap'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ServerResponse } from 'node:http'
import { ProxyAgent, request } from 'undici'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { auditLine } from './helpers.js'

/**
 * Server-sent events and other long responses: streamed as they come (no whole-response buffering), ended by
 * the idle timeout rather than a request timeout, audited once at stream end with duration and bytes.
 */

interface Gate { open (): void, opened: Promise<void> }
function gate (): Gate {
  let open!: () => void
  const opened = new Promise<void>((resolve) => { open = resolve })
  return { open, opened }
}

const held = new Map<string, Gate>()
const streams = new Set<ServerResponse>()
t.teardown(() => { for (const s of streams) s.destroy() })

const pki = await upstreamPki()
const sse = await startUpstream({
  tls: await pki.cert('sse.tool.test'),
  handler: (req, res) => {
    streams.add(res)
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/held') {
      // One event now, the rest only when the test opens the gate: the agent must see the first one before.
      res.write('data: first\n\n')
      const g = gate()
      held.set(url.searchParams.get('id') ?? '', g)
      void g.opened.then(() => { res.write('data: second\n\n'); res.end('data: last\n\n') })
      return
    }
    if (url.pathname === '/ticks') {
      // An event every 100 ms, `n` of them: a stream that outlives the request timeout but is never idle.
      const n = Number(url.searchParams.get('n'))
      let i = 0
      const timer = setInterval(() => {
        res.write(`data: tick ${++i}\n\n`)
        if (i === n) { clearInterval(timer); res.end() }
      }, 100)
      res.on('close', () => clearInterval(timer))
      return
    }
    // /stall: one event, then silence.
    res.write('data: only\n\n')
  },
})
t.teardown(() => sse.close())

const config = `
instance_id: agent-sse
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { sse.tool.test: 127.0.0.1 }
limits: { headers_timeout: 200ms, request_timeout: 300ms, idle_timeout: 1s }
issuers:
  local: { type: local_jwt, ttl: 10m }
tools:
  sse:
    match: { host: sse.tool.test, port: ${sse.port} }
    issuer: local
`
const sk = await startSidekey(t, config)
const caPem = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: caPem } })
t.teardown(() => agent.close())

const usedFor = (path: string) => (e: Record<string, unknown>): boolean => e.event === 'credential.used' && e.tool === 'sse' && e.path === path

t.test('events reach the agent as they are written; the audit line comes at stream end with duration and bytes', async (t) => {
  let done = 0
  for (const via of ['tunnel', 'absolute-form'] as const) {
    const id = via
    const dispatcher = via === 'tunnel' ? agent : new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
    if (via !== 'tunnel') t.teardown(() => dispatcher.close())
    const scheme = via === 'tunnel' ? 'https' : 'http'
    const res = await request(`${scheme}://sse.tool.test:${sse.port}/held?id=${id}`, { dispatcher })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-type'], 'text/event-stream')
    const [first] = await once(res.body, 'data') as [Buffer]
    t.equal(first.toString(), 'data: first\n\n', `${via}: the first event arrived while the upstream was still holding the stream`)
    const count = (): number => sk.log.lines.filter(usedFor('/held')).length
    t.equal(count(), done, `${via}: no audit line while the stream is open`)
    held.get(id)!.open()
    let rest = ''
    for await (const chunk of res.body) rest += (chunk as Buffer).toString()
    t.equal(rest, 'data: second\n\ndata: last\n\n')
    const used = await auditLine(sk.log, (e) => usedFor('/held')(e) && sk.log.lines.filter(usedFor('/held')).indexOf(e) === done)
    done++
    t.match(used, { status: 200, bytes_out: 'data: first\n\ndata: second\n\ndata: last\n\n'.length })
    t.type(used!.duration_ms, 'number')
  }
})

t.test('a stream longer than request_timeout is not cut while it keeps moving', async (t) => {
  const res = await request(`https://sse.tool.test:${sse.port}/ticks?n=15`, { dispatcher: agent })
  let body = ''
  for await (const chunk of res.body) body += (chunk as Buffer).toString()
  t.equal(body.match(/data: tick/g)?.length, 15, 'all 15 events (1.5 s of stream, request_timeout 300ms)')
  t.match(await auditLine(sk.log, usedFor('/ticks')), { status: 200 })
})

t.test('a stalled stream is ended by the idle timeout and audited with the error', async (t) => {
  const res = await request(`https://sse.tool.test:${sse.port}/stall`, { dispatcher: agent })
  const [first] = await once(res.body, 'data') as [Buffer]
  t.equal(first.toString(), 'data: only\n\n')
  const ended = await new Promise<string>((resolve) => {
    res.body.on('error', (err) => resolve(`error ${(err as NodeJS.ErrnoException).code ?? err.name}`))
    res.body.on('end', () => resolve('end'))
    res.body.resume()
  })
  t.ok(ended.length > 0, `the agent's stream ended (${ended}) instead of hanging`)
  const used = await auditLine(sk.log, usedFor('/stall'))
  t.match(used, { status: 200 })
  // Which timer fires first (the agent socket's idle timer or undici's body timeout, both idle_timeout) decides the code.
  t.match(used, { outcome: 'upstream_error', error: /^SIDEKEY_/ }, 'the audit line records that the stream did not complete')
})
