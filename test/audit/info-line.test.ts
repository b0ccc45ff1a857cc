import t from 'tap'
import { infoLineWriter } from '../../src/audit/log.js'
import { AuditHub } from '../../src/audit/hub.js'
import { formatVerifyResult } from '../../src/reports/verify/format.js'
import { verifyTrail } from '../../src/reports/verify/verify.js'
import { memoryLogger } from './helpers.js'
import { pino } from 'pino'
import { Writable } from 'node:stream'

/** The lines of the request path, and the shapes their fields take. */
const EVENTS: Array<Record<string, unknown>> = [
  {
    event: 'credential.used',
    tool: 'github',
    credential_id: 'c1',
    method: 'GET',
    host: 'api.github.com',
    path: '/repos/x',
    status: 200,
    duration_ms: 1.234,
    client: '127.0.0.1:5000',
    placeholder: 'stripped',
    request_id: 'ab-1',
    overhead_ms: 0.25,
    bytes_out: 1024,
    echoed: ['location', 'body'],
    replayed: true,
  },
  {
    event: 'credential.used',
    tool: 'mcp',
    credential_id: null,
    method: 'POST',
    host: 'h',
    path: '/mcp',
    status: 403,
    duration_ms: 0,
    client: 'c',
    placeholder: 'absent',
    request_id: 'r',
    outcome: 'mcp_denied',
    mcp: { method: 'tools/call', tool: 'delete "all" \\ now', ids: [1, 'two'] },
    task: 'T-1',
    budget: undefined
  },
  // Quotes, backslashes, C0 (JSON-escaped), DEL, C1, separators and bidi (rewritten to visible \uXXXX).
  {
    event: 'egress.denied',
    host: 'a"b\\c',
    port: 443,
    reason: 'no_tool',
    client: 'x\r\n{"forged":1}\u0007',
    method: 'GET',
    request_id: 'r2',
    path: '/\u009b2J\u2028\u202eevil\u007f',
    long: 'y'.repeat(150) + '"'
  },
  // A URL-like field keeps its query, with credential-carrying values redacted.
  {
    event: 'egress.passed',
    host: 'h',
    port: 80,
    method: 'GET',
    status: 502,
    client: 'c',
    request_id: 'r3',
    target: '/v1?key=abc&q=1',
    ratio: Number.NaN,
    big: 1e21,
    negative: -0,
    yes: false,
    when: new Date(0)
  },
  { event: 'credential.echoed' },
]

/** Lines whose `time` is set aside: the two writers may fall on different milliseconds. */
function timeless (lines: readonly string[]): string[] {
  return lines.map((l) => l.replace(/"time":"[^"]*"/, '"time":"T"'))
}

t.test('the info line writer writes, byte for byte, the line pino writes for the same fields', async (t) => {
  const viaPino = memoryLogger('info', { chain: false })
  const viaWriter = memoryLogger('info', { chain: false })
  const write = infoLineWriter(viaWriter.logger.child({ instance_id: 'i-1' }))!
  t.ok(write, 'a logger of createLogger, and its children, have one')
  for (const fields of EVENTS) {
    viaPino.logger.child({ instance_id: 'i-1' }).info(fields)
    t.equal(write(fields), true)
  }
  t.same(timeless(viaWriter.lines()), timeless(viaPino.lines()))
  t.match(viaWriter.lines()[2], /\\\\u009b2J\\\\u2028\\\\u202eevil\\\\u007f/, 'sanitised as pino sanitises')
  t.match(viaWriter.lines()[3], /"target":"\/v1\?key=\[REDACTED\]&q=1"/)
})

t.test('a field pino redacts is left to pino, and a line below the level is dropped', async (t) => {
  const canary = 'sk-canary-0123456789abcdef'
  const mem = memoryLogger('info', { chain: false })
  const write = infoLineWriter(mem.logger)!
  t.equal(write({ event: 'x', token: canary }), false, 'not written here')
  t.equal(write({ event: 'x', headers: { authorization: canary } }), false)
  const cyclic: Record<string, unknown> = { event: 'x' }
  cyclic.self = { cyclic }
  t.equal(write(cyclic), false, 'what JSON.stringify refuses is pino\'s too')
  t.same(mem.lines(), [])
  const quiet = memoryLogger('warn', { chain: false })
  t.equal(infoLineWriter(quiet.logger)!({ event: 'x' }), true)
  t.same(quiet.lines(), [], 'warn level: no info line, as with pino')
  const foreign = pino({}, new Writable({ write: (_c, _e, cb) => cb() }))
  t.equal(infoLineWriter(foreign), undefined, 'not a logger made by createLogger')
})

t.test('through the hub, written lines and pino\'s lines seal into one chain that verifies', async (t) => {
  const mem = memoryLogger()
  const metrics = { observe: () => {}, dropped: () => {}, error: () => {} }
  const hub = new AuditHub({ logger: mem.logger, metrics, instanceId: 'i-1' })
  for (const fields of EVENTS.slice(0, 4)) hub.emit(fields as never)
  hub.emit({ event: 'credential.refresh_failed', tool: 'github', error: 'E', consecutive_failures: 1 } as never)
  hub.close()
  const records = mem.records()
  t.same(records.map((r) => r.seq), [1, 2, 3, 4, 5])
  t.same(records.map((r) => r.instance_id), ['i-1', 'i-1', 'i-1', 'i-1', 'i-1'])
  t.equal(records[0]!.path, '/repos/x')
  const r = await verifyTrail(mem.lines())
  // No shutdown checkpoint here (no trail), so the run's tail is unvouched; its chain itself must hold.
  t.same(r.problems.map((p) => p.kind), ['tail'], formatVerifyResult(r))
  t.equal(r.events, 5)
})
