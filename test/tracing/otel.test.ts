import t from 'tap'
import { createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { ProxyAgent, request } from 'undici'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream } from '../helpers/upstream.js'
import { startOtlpReceiver, type ExportedSpan } from '../helpers/otlp.js'
import { until } from '../helpers/until.js'

// sidekey exports its spans to a real OTLP/HTTP receiver (protobuf, decoded by trace.proto's field numbers).
const up = await startUpstream()
t.teardown(() => up.close())
const otlp = await startOtlpReceiver()
t.teardown(() => otlp.close())

const tracingYaml = (ratio: number, endpoint = otlp.url, extra = ''): string => `
instance_id: traced-1
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
tracing: { endpoint: ${endpoint}, ratio: ${ratio}, delay: 50ms${extra} }
issuers: { local: { type: local_jwt } }
tools:
  api:
    match: { host: api.tool.test, port: ${up.port} }
    issuer: local
    plaintext: true
    placeholder: sk-placeholder-canary
`

const AGENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const AGENT_SPAN = '00f067aa0ba902b7'

async function call (proxyUrl: string, path: string, headers: Record<string, string>): Promise<number> {
  const agent = new ProxyAgent({ uri: proxyUrl, proxyTunnel: false })
  try {
    const res = await request(`http://api.tool.test:${up.port}${path}`, { dispatcher: agent, headers })
    await res.body.dump()
    return res.statusCode
  } finally {
    await agent.close()
  }
}

const inTrace = (traceId: string): ExportedSpan[] => otlp.spans.filter((s) => s.traceId === traceId)

t.test('the agent\'s traceparent is continued: agent span → request → stages; the upstream below', async (t) => {
  const sk = await startSidekey(t, tracingYaml(0.0))
  const status = await call(sk.proxyUrl, '/v1/items?api_key=query-canary-77', {
    authorization: 'Bearer sk-placeholder-canary',
    traceparent: `00-${AGENT_TRACE}-${AGENT_SPAN}-01`,
    tracestate: 'vendor=agent1',
    'x-sidekey-task': 'task-42',
  })
  t.equal(status, 200)
  await until(() => inTrace(AGENT_TRACE).some((s) => s.name === 'scrubbed relay'), 'the request\'s spans exported')
  const spans = inTrace(AGENT_TRACE)
  const root = spans.find((s) => s.parentSpanId === AGENT_SPAN)
  t.ok(root, 'a sampled parent is followed even at ratio 0')
  t.equal(root!.name, 'GET api')
  t.equal(root!.kind, 2, 'SPAN_KIND_SERVER')
  t.match(root!.attributes, {
    'sidekey.tool': 'api',
    'http.request.method': 'GET',
    'http.response.status_code': 200,
    'url.path': '/v1/items',
    'sidekey.task': 'task-42',
    'server.address': 'api.tool.test',
  })
  t.match(root!.attributes['sidekey.credential_id'], /\S/, 'the credential id, not its value')
  const children = spans.filter((s) => s.parentSpanId === root!.spanId).map((s) => s.name).sort()
  // Policy steps others add (approvals, budgets) get spans of their own too: every step is named by its function.
  const stages = ['credential', 'methodAllowed', 'notLocked', 'placeholderPresent', 'upstream request',
    'scrubbed relay']
  for (const stage of stages) {
    t.ok(children.includes(stage), `${stage} is a child of the request span`)
  }
  const upstreamSpan = spans.find((s) => s.name === 'upstream request')!
  t.equal(upstreamSpan.kind, 3, 'SPAN_KIND_CLIENT')
  const connect = spans.find((s) => s.name === 'upstream connect')
  t.equal(connect?.parentSpanId, upstreamSpan.spanId, 'the first call opened a connection: its span is under the call')

  const seen = up.seen.at(-1)!
  const parent = `00-${AGENT_TRACE}-${upstreamSpan.spanId}-01`
  t.equal(seen.headers.traceparent, parent, 'the upstream\'s parent is sidekey\'s span')
  t.equal(seen.headers.tracestate, 'vendor=agent1', 'tracestate goes on as the agent sent it')
  t.equal(seen.rawHeaders.filter((h) => h.toLowerCase() === 'traceparent').length, 1, 'one traceparent upstream')

  await sk.app.audit.settled()
  const used = sk.log.events('credential.used').at(-1)!
  t.equal(used.trace_id, AGENT_TRACE, 'the audit line names the trace')

  const real = seen.headers.authorization!.replace(/^Bearer /, '')
  t.match(real, /^eyJ/, 'the upstream saw the real credential')
  const exported = Buffer.concat(otlp.bodies)
  for (const secret of [real, 'sk-placeholder-canary', 'query-canary-77', 'api_key']) {
    t.equal(exported.indexOf(secret), -1, `no exported byte holds ${secret === real ? 'the real credential' : secret}`)
  }
  t.ok(otlp.contentTypes.every((c) => c === 'application/x-protobuf'), 'OTLP/HTTP protobuf')
})

t.test('ratio 1, no parent: a new trace, refreshes too; ratio 0: none recorded, the trace passed on', async (t) => {
  const sk = await startSidekey(t, tracingYaml(1))
  t.equal(await call(sk.proxyUrl, '/v1/new', { authorization: 'Bearer sk-placeholder-canary' }), 200)
  await sk.app.audit.settled()
  const traceId = sk.log.events('credential.used').at(-1)!.trace_id as string
  t.match(traceId, /^[0-9a-f]{32}$/)
  await until(() => inTrace(traceId).some((s) => s.name === 'GET api'), 'the new trace exported')
  t.equal(inTrace(traceId).find((s) => s.name === 'GET api')!.parentSpanId, '', 'a root span')
  t.equal(inTrace(traceId)[0]!.resource['service.name'], 'sidekey')
  await until(() => otlp.spans.some((s) => s.name === 'credential refresh'), 'a refresh span')
  const refresh = otlp.spans.find((s) => s.name === 'credential refresh')!
  t.match(refresh.attributes, { 'sidekey.tool': 'api', 'sidekey.issuer': 'local', 'sidekey.refresh_reason': 'initial' })
  const fetches = otlp.spans.filter((s) => s.name === 'issuer fetch')
  t.ok(fetches.some((s) => s.parentSpanId === refresh.spanId), 'the issuer call is its child')

  const quiet = await startSidekey(t, tracingYaml(0))
  const before = otlp.spans.length
  t.equal(await call(quiet.proxyUrl, '/v1/unsampled', { authorization: 'Bearer sk-placeholder-canary' }), 200)
  await quiet.app.audit.settled()
  t.equal(quiet.log.events('credential.used').at(-1)!.trace_id, undefined, 'no trace_id when nothing was recorded')
  const unsampled = /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/
  t.match(up.seen.at(-1)!.headers.traceparent, unsampled, 'an unsampled trace goes on upstream')
  await quiet.app.close()
  t.equal(otlp.spans.slice(before).filter((s) => s.name === 'GET api').length, 0, 'no request span exported at ratio 0')
})

t.test('without tracing: the agent\'s traceparent passes untouched and no trace_id is written', async (t) => {
  const sk = await startSidekey(t, tracingYaml(1).replace(/^tracing:.*$/m, ''))
  const traceparent = `00-${AGENT_TRACE}-${AGENT_SPAN}-01`
  t.equal(await call(sk.proxyUrl, '/v1/off', { authorization: 'Bearer sk-placeholder-canary', traceparent }), 200)
  t.equal(up.seen.at(-1)!.headers.traceparent, traceparent)
  await sk.app.audit.settled()
  t.equal(sk.log.events('credential.used').at(-1)!.trace_id, undefined)
})

t.test('a collector that accepts and never answers holds up no request; a full queue drops spans', async (t) => {
  const held: Socket[] = []
  const silent = createServer((socket) => { held.push(socket) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of held) s.destroy(); silent.close() })
  const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/v1/traces`
  const sk = await startSidekey(t, tracingYaml(1, endpoint, ', max_queue: 4, export_timeout: 1s'))
  const statuses: number[] = []
  const authorization = 'Bearer sk-placeholder-canary'
  for (let i = 0; i < 30; i++) statuses.push(await call(sk.proxyUrl, `/v1/held/${i}`, { authorization }))
  t.same(new Set(statuses), new Set([200]), '30 calls answered while every export hangs')
  await until(() => held.length > 0, 'the exporter to have tried')
  // The teardown's close must return too: the hung export is cut at export_timeout, and its failure is not close's.
})
