import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProxyAgent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey, tick } from '../helpers/sidekey.js'
import { until } from '../helpers/until.js'

const SECRET = 'sk-real-budget-secret-0123456789'
const up = await startUpstream()
t.teardown(() => up.close())
const dir = mkdtempSync(join(tmpdir(), 'sidekey-budget-'))
writeFileSync(join(dir, 'key'), `${SECRET}\n`)

const sk = await startSidekey(t, `
instance_id: budget-test
ca: { dir: {{CA_DIR}} }
resolve: { mail.test: 127.0.0.1, tasks.test: 127.0.0.1 }
issuers: { key: { type: file, path: ${join(dir, 'key')} } }
tools:
  mail:
    match: { host: mail.test, port: ${up.port} }
    issuer: key
    plaintext: true
    budget: [{ requests: 50, per: 1h, by: instance }]
  tasks:
    match: { host: tasks.test, port: ${up.port} }
    issuer: key
    plaintext: true
    budget: [{ requests: 3, per: 10m, by: task }]
`)
const agent = new ProxyAgent(sk.proxyUrl)
t.teardown(() => agent.close())

interface Answer { status: number, headers: Record<string, unknown>, text: string }

async function call (host: string, task?: string): Promise<Answer> {
  const headers: Record<string, string> = { authorization: 'Bearer placeholder' }
  if (task !== undefined) headers['x-sidekey-task'] = task
  const url = `http://${host}:${up.port}/send`
  const res = await request(url, { method: 'POST', body: '{}', headers, dispatcher: agent })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

const seenBy = (host: string): number => up.seen.filter((s) => s.headers.host?.startsWith(host) === true).length

async function metric (name: string, labels: string): Promise<number | undefined> {
  const line = (await sk.app.metrics.text()).split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? undefined : Number(line.split(' ').pop())
}

t.test('by instance: 50 calls go out with the real key; the 51st is 429 with Retry-After, never sent', async (t) => {
  for (let i = 0; i < 50; i++) t.equal((await call('mail.test')).status, 200)
  t.equal(seenBy('mail.test'), 50)
  t.ok(up.seen.every((s) => s.headers.authorization === `Bearer ${SECRET}`), 'the upstream saw the real key')
  t.equal(await metric('sidekey_budget_remaining', 'tool="mail",budget="requests:50/1h/instance"'), 0)
  const refused = await call('mail.test')
  t.equal(refused.status, 429)
  const retry = Number(refused.headers['retry-after'])
  // The window errs long by up to one of its 30 slots: the hour and two minutes at most.
  t.ok(retry > 3480 && retry <= 3720, `Retry-After ${retry} s: when the first calls leave the window`)
  t.match(refused.headers['proxy-status'], /^sidekey; error=http_request_denied/)
  const body = { error: 'budget_exhausted', tool: 'mail', budget: 'requests:50/1h/instance', retry_after: retry }
  t.match(JSON.parse(refused.text), body)
  t.notOk(refused.text.includes(SECRET))
  t.equal((await call('mail.test')).status, 429, 'still spent')
  t.equal(seenBy('mail.test'), 50, 'the upstream never saw the refused calls')
  await tick()
  await until(() => sk.log.events('anomaly').some((a) => a.kind === 'budget_exhausted'), 'the anomaly')
  const used = sk.log.events('credential.used').filter((e) => e.tool === 'mail' && e.outcome === 'budget_exhausted')
  t.equal(used.length, 2)
  t.match(used[0], { status: 429, budget: 'requests:50/1h/instance', credential_id: null })
  const anomalies = sk.log.events('anomaly').filter((a) => a.kind === 'budget_exhausted' && a.tool === 'mail')
  t.equal(anomalies.length, 1, 'one anomaly per budget and window, however many refusals')
  t.equal(await metric('sidekey_budget_exhausted_total', 'tool="mail",budget="requests:3/10m/task"'), undefined)
  t.equal(await metric('sidekey_budget_exhausted_total', 'tool="mail",budget="requests:50/1h/instance"'), 2)
  t.notOk(sk.log.text.includes(SECRET), 'the key is in no log line')
})

t.test('by task: each X-Sidekey-Task has its own count; calls without one share "-"', async (t) => {
  for (let i = 0; i < 3; i++) t.equal((await call('tasks.test', 'task-a')).status, 200)
  t.equal((await call('tasks.test', 'task-a')).status, 429, 'task-a spent')
  for (let i = 0; i < 3; i++) t.equal((await call('tasks.test', 'task-b')).status, 200, 'task-b counts on its own')
  for (let i = 0; i < 3; i++) t.equal((await call('tasks.test')).status, 200)
  const shared = await call('tasks.test')
  t.equal(shared.status, 429, 'calls without a task share one count')
  t.ok(Number(shared.headers['retry-after']) <= 620)
  t.equal(seenBy('tasks.test'), 9)
  const refused = sk.log.events('credential.used').filter((e) => e.tool === 'tasks' && e.outcome === 'budget_exhausted')
  t.same(refused.map((e) => e.task ?? '-'), ['task-a', '-'])
})
