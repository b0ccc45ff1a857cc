import t from 'tap'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { llm } from '../helpers/llm.js'
import { until } from '../helpers/until.js'
import { cli } from '../helpers/cli.js'
import { startApprovals } from '../helpers/approvals.js'

/**
 * A human approves the exact call before sidekey attaches the credential: the official OpenAI SDK through sidekey,
 * a stand-in API behind it, decisions by `sidekey approvals` (the built CLI) and the admin API.
 */

const SECRET = 'sk-real-llm-secret-abcdef0123456789'
const up = await startUpstream({ handler: llm })
t.teardown(() => up.close())
const hooked: Array<Record<string, unknown>> = []
const hook = createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
    hooked.push(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>)
    res.writeHead(204).end()
  })
})
await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => { hook.closeAllConnections(); hook.close(() => resolve()) }))
const hookPort = (hook.address() as AddressInfo).port
// A port nothing listens on: the hook's delivery fails, and the call still waits for its decision.
const deadHook = createServer()
await new Promise<void>((resolve) => deadHook.listen(0, '127.0.0.1', resolve))
const deadPort = (deadHook.address() as AddressInfo).port
await new Promise<void>((resolve) => deadHook.close(() => resolve()))

const dir = mkdtempSync(join(tmpdir(), 'sidekey-approvals-'))
writeFileSync(join(dir, 'key'), `${SECRET}\n`)
const SEND = '{ methods: [POST], path_prefix: /v1/chat/completions }'
const file = join(dir, 'sidekey.yaml')
writeFileSync(file, `
instance_id: approvals-test
ca: { dir: ${join(dir, 'ca')} }
limits: { replay_body_bytes: 4096 }
resolve: { held.test: 127.0.0.1, short.test: 127.0.0.1, dead.test: 127.0.0.1 }
issuers: { key: { type: file, path: ${join(dir, 'key')} } }
tools:
  held:
    match: { host: held.test, port: ${up.port} }
    issuer: key
    plaintext: true
    approve: [${SEND}]
    approval: { timeout: 60s, valid_for: 1m, webhook: http://127.0.0.1:${hookPort}/hook }
  short:
    match: { host: short.test, port: ${up.port} }
    issuer: key
    plaintext: true
    approve: [${SEND}]
    approval: { timeout: 1s, valid_for: 1m }
  dead:
    match: { host: dead.test, port: ${up.port} }
    issuer: key
    plaintext: true
    approve: [${SEND}]
    approval: { timeout: 60s, webhook: http://127.0.0.1:${deadPort}/hook }
`)
const sk = await startApprovals(t, file)
const { pending, heldCall, decide, counter } = sk

function openai (host: string, opts: { maxRetries?: number, timeout?: number } = {}): OpenAI {
  const baseURL = `http://${host}.test:${up.port}/v1`
  return new OpenAI({ apiKey: 'placeholder', baseURL, maxRetries: 0, fetch: sk.fetch, ...opts })
}

function chat (host: string, text: string): Promise<OpenAI.Chat.Completions.ChatCompletion> {
  return openai(host).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: text }] })
}

type ApiError = InstanceType<typeof OpenAI.APIError>
const failure = (call: Promise<unknown>): Promise<ApiError> =>
  call.then(() => { throw new Error('expected a refusal') }, (e: unknown) => e as ApiError)
/** The SDK keeps only the body's `error` name; the approval id is in the Proxy-Status details too. */
function approvalOf (err: ApiError): string {
  return /approval (apr_[\w-]+)/.exec(err.headers?.get('proxy-status') ?? '')?.[1] ?? 'none'
}
const approvals = (...args: string[]) => cli(['approvals', ...args, '--config', file, '--admin', sk.app.adminAddress])

t.test('a held call waits, unsent; `sidekey approvals approve` sends it with the real credential', async (t) => {
  const before = up.seen.length
  const call = chat('held', 'send the quarterly report to alice@example.com')
  const approval = await heldCall('held')
  t.equal(up.seen.length, before, 'nothing reached the API while the call waits')
  const requested = sk.log.events('approval.requested').find((e) => e.id === approval.id)!
  const expected = { tool: 'held', instance: 'approvals-test', method: 'POST', host: 'held.test' }
  t.match(requested, { path: '/v1/chat/completions' })
  t.match(requested, expected)
  t.match(requested.preview, /alice@example\.com/, 'the approver reads what is sent')
  await until(() => hooked.some((h) => h.id === approval.id), 'webhook delivered')
  const delivered = hooked.find((h) => h.id === approval.id)!
  t.equal(delivered.event, 'approval.requested')
  t.match(requested, delivered, 'the webhook gets the approval.requested JSON')
  const listed = await approvals('list')
  t.equal(listed.code, 0, listed.stderr)
  t.match(listed.stdout, approval.id)
  const approved = await approvals('approve', approval.id)
  t.equal(approved.code, 0, approved.stderr)
  const answer = await call
  t.equal(answer.choices[0]!.message.content, 'say "total_tokens": 999999', 'the SDK gets the API answer')
  t.equal(up.seen.length, before + 1, 'sent once')
  const sent = up.seen.at(-1)!
  t.equal(sent.headers.authorization, `Bearer ${SECRET}`, 'the API saw the real credential')
  const sentHash = createHash('sha256').update(sent.body).digest('hex')
  t.equal(sentHash, approval.body_sha256, 'the bytes sent are the bytes approved')
  t.match(sk.log.events('approval.granted').find((e) => e.id === approval.id), { by: 'admin', tool: 'held' })
  t.match(sk.log.events('credential.used').at(-1), { tool: 'held', status: 200 })
  t.equal(await counter('held', 'granted'), 1)
  t.notOk(sk.log.text.includes(SECRET), 'the credential is in no log line')
})

t.test('denied: 403 approval_denied, never sent', async (t) => {
  const before = up.seen.length
  const call = failure(chat('held', 'delete every file'))
  const approval = await heldCall('held')
  const denied = await approvals('deny', approval.id, '--reason', 'not today')
  t.equal(denied.code, 0, denied.stderr)
  const err = await call
  t.ok(err instanceof OpenAI.PermissionDeniedError, 'the SDK raises PermissionDeniedError')
  t.equal(err.status, 403)
  t.equal(err.error, 'approval_denied', 'the error name, as the SDK reads it')
  t.match(err.headers?.get('proxy-status'), `approval ${approval.id} denied`, 'the approval id, in Proxy-Status')
  t.equal(up.seen.length, before, 'never sent')
  t.match(sk.log.events('approval.denied').find((a) => a.id === approval.id), { by: 'admin', reason: 'not today' })
  t.match(sk.log.events('credential.used').at(-1), { tool: 'held', status: 403, outcome: 'approval_denied' })
  t.equal(await decide(approval.id, 'approve'), 404, 'a decided approval cannot be decided again')
})

t.test('timed out, approved later: the identical call goes through once; another body is held again', async (t) => {
  const before = up.seen.length
  const err = await failure(chat('short', 'book the flight'))
  t.ok(err instanceof OpenAI.PermissionDeniedError)
  t.equal(err.error, 'approval_timeout')
  const id = approvalOf(err)
  t.match(sk.log.events('approval.expired').find((e) => e.id === id), { tool: 'short' })
  t.equal((await heldCall('short', 'timed_out')).id, id, 'still listed, to be approved')
  t.equal(await decide(id, 'approve'), 200)
  t.match(sk.log.events('approval.granted').find((e) => e.id === id), { by: 'admin', after_timeout: true })
  const changed = await failure(chat('short', 'book the flight and the hotel'))
  t.equal(changed.error, 'approval_timeout', 'a different body is not covered by the approval')
  t.not(approvalOf(changed), id, 'it asks again, under a new id')
  t.equal(up.seen.length, before, 'nothing sent yet')
  const answer = await chat('short', 'book the flight')
  t.equal(answer.object, 'chat.completion', 'the identical call went through without asking')
  t.equal(up.seen.length, before + 1)
  t.equal(up.seen.at(-1)!.headers.authorization, `Bearer ${SECRET}`)
  const again = await failure(chat('short', 'book the flight'))
  t.equal(again.error, 'approval_timeout', 'an approval lets one call through, not two')
  t.equal(up.seen.length, before + 1)
  t.equal(await counter('short', 'expired'), 3)
})

t.test('an approval of one tool never releases the same call to another', async (t) => {
  const before = up.seen.length
  const first = chat('held', 'same words')
  const second = failure(chat('dead', 'same words'))
  const a = await heldCall('held')
  const b = await heldCall('dead')
  t.equal(a.body_sha256, b.body_sha256, 'the same body')
  t.not(a.id, b.id, 'two approvals')
  t.equal(await decide(a.id, 'approve'), 200)
  t.equal((await first).object, 'chat.completion', 'the approved one went through')
  t.equal(up.seen.length, before + 1)
  t.ok((await pending()).some((p) => p.id === b.id), 'the other still waits')
  t.equal(await decide(b.id, 'deny'), 200)
  t.ok((await second) instanceof OpenAI.PermissionDeniedError)
  t.equal(up.seen.length, before + 1)
  await until(() => sk.log.events('approval.webhook_failed').some((e) => e.id === b.id), 'webhook failure audited')
  t.match(sk.log.events('approval.webhook_failed').find((e) => e.id === b.id), { tool: 'dead', error: 'ECONNREFUSED' })
})

t.test('a body too large to hold is refused, never sent unapproved; calls no rule names pass', async (t) => {
  const before = up.seen.length
  const big = await failure(chat('held', 'x'.repeat(8192)))
  t.equal(big.status, 413)
  t.equal(big.error, 'approval_body_too_large')
  t.equal(up.seen.length, before)
  const res = await request(`http://held.test:${up.port}/v1/messages`, {
    method: 'POST', dispatcher: sk.agent, body: '{}', headers: { 'content-type': 'application/json' },
  })
  await res.body.dump()
  t.equal(res.statusCode, 200, 'another path goes straight on')
  t.equal(up.seen.length, before + 1)
})

t.test('secret-shaped text in a held body is redacted in event and webhook; admin needs the token', async (t) => {
  const token = 'ghp_' + 'aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6'
  const call = failure(chat('held', `use ${token} to push`))
  const approval = await heldCall('held')
  t.notOk(approval.preview.includes(token))
  t.match(approval.preview, /<redacted:ghp_>/)
  await until(() => hooked.some((h) => h.id === approval.id), 'webhook delivered')
  t.notOk(JSON.stringify(hooked).includes(token), 'not in the webhook')
  const anonymous = await request(`${sk.adminUrl}/approvals`)
  await anonymous.body.dump()
  t.equal(anonymous.statusCode, 401, 'listing needs the admin token')
  const forged = await request(`${sk.adminUrl}/approvals/${approval.id}`, {
    method: 'POST', headers: { authorization: 'Bearer wrong' }, body: '{"decision":"approve"}',
  })
  await forged.body.dump()
  t.equal(forged.statusCode, 401, 'deciding needs the admin token')
  t.equal(await decide(approval.id, 'deny'), 200)
  await call
  t.notOk(sk.log.text.includes(token), 'the token is in no log line')
})

t.test('an SDK that gives up and retries: the approval releases a later retry, never an abandoned call', async (t) => {
  const before = up.seen.length
  const impatient = openai('held', { maxRetries: 1, timeout: 500 })
  const messages = [{ role: 'user' as const, content: 'pay invoice 7' }]
  const err = await failure(impatient.chat.completions.create({ model: 'gpt-test', messages }))
  t.ok(err instanceof OpenAI.APIConnectionTimeoutError, 'the SDK timed out twice (one retry)')
  const approval = await sk.heldCall('held', 'timed_out')
  const asked = sk.log.events('approval.requested').filter((e) => e.id === approval.id)
  t.equal(asked.length, 1, 'the retry joined the same approval')
  t.equal(await decide(approval.id, 'approve'), 200)
  t.equal(up.seen.length, before, 'the abandoned calls were not sent')
  const answer = await chat('held', 'pay invoice 7')
  t.equal(answer.object, 'chat.completion', 'the next identical call goes through')
  t.equal(up.seen.length, before + 1, 'once')
})
