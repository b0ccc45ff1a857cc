import t from 'tap'
import { writeFileSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as h2connect } from 'node:http2'
import { Writable } from 'node:stream'
import { request, ProxyAgent } from 'undici'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { startSidekey, tick } from '../helpers/sidekey.js'
import { tasksCommand } from '../../src/reports/tasks.js'
import { raw, statusOf } from '../hardening/helpers.js'
import { auditLine, connectTo, handshake, readHead, startWsUpstream } from '../protocols/helpers.js'
import { tlsThroughTunnel } from '../helpers/connect.js'

/** X-Sidekey-Task: the agent names the task of each call; sidekey audits it and never forwards it. */
const pki = await upstreamPki()
const tlsUp = await startUpstream({ tls: await pki.cert('api.task.test') })
const plainUp = await startUpstream()
const freeUp = await startUpstream()
const ws = await startWsUpstream()
t.teardown(() => tlsUp.close())
t.teardown(() => plainUp.close())
t.teardown(() => freeUp.close())
t.teardown(() => ws.close())

const sk = await startSidekey(t, `
instance_id: agent-task
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { api.task.test: 127.0.0.1, plain.task.test: 127.0.0.1, ws.task.test: 127.0.0.1, free.task.test: 127.0.0.1 }
egress: { unmatched: tunnel, block_private: false, connect_ports: [443, ${freeUp.port}] }
issuers:
  local: { type: local_jwt, issuer: https://sidekey.test }
tools:
  api: { match: { host: api.task.test, port: ${tlsUp.port} }, issuer: local, placeholder: sidekey }
  plain: { match: { host: plain.task.test, port: ${plainUp.port}, methods: [GET] }, issuer: local, plaintext: true, placeholder: sidekey }
  ws: { match: { host: ws.task.test, port: ${ws.port} }, issuer: local, plaintext: true }
`)
const caPem = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')
const direct = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
const tunnelled = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: caPem } })
t.teardown(() => direct.close())
t.teardown(() => tunnelled.close())

const noTaskHeader = (rawHeaders: string[]): boolean => !rawHeaders.some((h) => h.toLowerCase() === 'x-sidekey-task')
const usedWith = (requestPath: string): Promise<Record<string, unknown> | undefined> =>
  auditLine(sk.log, (e) => e.event === 'credential.used' && e.path === requestPath)

t.test('absolute-form http: the task is on the audit line and never reaches the upstream, whatever its spelling', async (t) => {
  const spellings = [['X-Sidekey-Task', 'ticket-42/step:1'], ['x-SIDEKEY-task', 'run_7.a~b@c+d=e']] as const
  for (const [i, [name, task]] of spellings.entries()) {
    const res = await request(`http://plain.task.test:${plainUp.port}/v1/spelling-${i}?q=1`, { dispatcher: direct, headers: { authorization: 'Bearer sidekey', [name]: task } })
    t.equal(res.statusCode, 200)
    await res.body.dump()
    t.ok(noTaskHeader(plainUp.seen.at(-1)!.rawHeaders), `${name} stripped`)
    t.match(await usedWith(`/v1/spelling-${i}`), { tool: 'plain', task, status: 200 })
  }
  const res = await request(`http://plain.task.test:${plainUp.port}/v1/untasked`, { dispatcher: direct, headers: { authorization: 'Bearer sidekey' } })
  await res.body.dump()
  t.notOk('task' in (await usedWith('/v1/untasked'))!, 'a call without the header has no task')
})

t.test('a call refused before the upstream (method_denied) still carries its task', async (t) => {
  const res = await request(`http://plain.task.test:${plainUp.port}/v1/denied`, { method: 'DELETE', dispatcher: direct, headers: { 'x-sidekey-task': 'job-9' } })
  t.equal(res.statusCode, 403)
  await res.body.dump()
  t.match(await usedWith('/v1/denied'), { outcome: 'method_denied', task: 'job-9', status: 403 })
})

t.test('inside an intercepted TLS tunnel, over HTTP/1.1 and HTTP/2', async (t) => {
  const res = await request(`https://api.task.test:${tlsUp.port}/h1`, { dispatcher: tunnelled, headers: { authorization: 'Bearer sidekey', 'x-sidekey-task': 'tls-h1' } })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  t.ok(noTaskHeader(tlsUp.seen.at(-1)!.rawHeaders))
  t.match(await usedWith('/h1'), { tool: 'api', task: 'tls-h1' })

  const socket = await tlsThroughTunnel(sk.proxyPort, `api.task.test:${tlsUp.port}`, { servername: 'api.task.test', ca: caPem, alpn: ['h2'] })
  const session = h2connect(`https://api.task.test:${tlsUp.port}`, { createConnection: () => socket })
  t.teardown(() => session.destroy())
  const stream = session.request({ ':path': '/h2', authorization: 'Bearer sidekey', 'x-sidekey-task': 'tls-h2' })
  const [status] = await Promise.all([
    new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status'])))),
    new Promise<void>((resolve) => { stream.resume(); stream.once('end', resolve) }),
  ])
  t.equal(status, 200)
  t.ok(noTaskHeader(tlsUp.seen.at(-1)!.rawHeaders))
  t.match(await usedWith('/h2'), { tool: 'api', task: 'tls-h2' })
})

t.test('a WebSocket handshake: stripped from the upgrade, audited at the 101', async (t) => {
  const socket = await connectTo(sk.proxyPort)
  t.teardown(() => socket.destroy())
  socket.write(handshake(`http://ws.task.test:${ws.port}/live`, `ws.task.test:${ws.port}`, { 'X-Sidekey-Task': 'ws-1' }))
  t.equal((await readHead(socket)).status, 101)
  t.ok(noTaskHeader(ws.seen.at(-1)!.rawHeaders))
  t.match(await usedWith('/live'), { tool: 'ws', task: 'ws-1', status: 101 })
})

t.test('pass-through traffic (no tool) does not forward it either', async (t) => {
  const res = await request(`http://free.task.test:${freeUp.port}/open`, { dispatcher: direct, headers: { 'x-sidekey-task': 'free-1', authorization: 'Bearer own' } })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  t.ok(noTaskHeader(freeUp.seen.at(-1)!.rawHeaders))
  t.equal(freeUp.seen.at(-1)!.headers.authorization, 'Bearer own')
})

t.test('a malformed task is refused with 400, audited, and reaches nothing; the proxy keeps serving', async (t) => {
  const before = plainUp.seen.length
  const target = `http://plain.task.test:${plainUp.port}/v1/bad`
  // A control character other than a tab is refused by Node's HTTP parser before sidekey sees the request.
  const control = await raw(sk.proxyPort, `GET ${target} HTTP/1.1\r\nHost: plain.task.test\r\nX-Sidekey-Task: a\u0001b\r\nConnection: close\r\n\r\n`)
  t.equal(statusOf(control.text), 400, 'a control character: 400')
  const cases: Array<[string, string, string]> = [
    ['10 KB', `X-Sidekey-Task: ${'a'.repeat(10 * 1024)}\r\n`, 'bad_task'],
    ['129 characters', `X-Sidekey-Task: ${'a'.repeat(129)}\r\n`, 'bad_task'],
    ['a tab inside', 'X-Sidekey-Task: a\tb\r\n', 'bad_task'],
    ['a space inside', 'X-Sidekey-Task: a b\r\n', 'bad_task'],
    ['non-ASCII', `X-Sidekey-Task: ${Buffer.from('caf\u00e9').toString('latin1')}\r\n`, 'bad_task'],
    ['empty', 'X-Sidekey-Task: \r\n', 'bad_task'],
    ['sent twice', 'X-Sidekey-Task: a\r\nx-sidekey-task: b\r\n', 'bad_task'],
  ]
  for (const [label, header, reason] of cases) {
    const denied = sk.log.events('egress.denied').length
    const res = await raw(sk.proxyPort, `GET ${target} HTTP/1.1\r\nHost: plain.task.test:${plainUp.port}\r\n${header}Connection: close\r\n\r\n`)
    t.equal(statusOf(res.text), 400, `${label}: 400`)
    await tick()
    t.match(sk.log.events('egress.denied').slice(denied), [{ reason }], `${label}: audited`)
  }
  t.equal(plainUp.seen.length, before, 'nothing reached the upstream')
  t.notOk(sk.log.text.includes('a'.repeat(129)), 'the refused value is not logged')
  const res = await request(`${target}/after`, { dispatcher: direct, headers: { 'x-sidekey-task': 'after' } })
  t.equal(res.statusCode, 200)
  await res.body.dump()
})

t.test('sidekey audit tasks lists every task of the run with its tools, calls and statuses', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'sidekey-tasks-')), 'audit.log')
  writeFileSync(file, sk.log.text)
  const tasked = sk.log.events('credential.used').filter((e) => typeof e.task === 'string')
  t.ok(tasked.length >= 7)
  let stdout = ''
  const code = await tasksCommand([file], { stdin: process.stdin, stdout: new Writable({ write (c: Buffer, _e, cb) { stdout += c.toString(); cb() } }), stderr: process.stderr })
  t.equal(code, 0)
  for (const e of tasked) t.match(stdout, new RegExp(`^task ${String(e.task).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}  `, 'm'), `task ${String(e.task)} listed`)
  t.match(stdout, /^task job-9 {2}1 call {2}\S+ \.\. \S+ {2}instance agent-task\n {2}tool +calls +status\n {2}plain +1 +403×1$/m)
  t.match(stdout, /^sidekey audit tasks: \d+ tasks, \d+ calls with a task, \d+ without$/m)
})
