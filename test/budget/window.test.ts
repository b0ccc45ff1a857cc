import t from 'tap'
import { Budgets, BudgetCharge, MAX_TASKS, type FleetLedger } from '../../src/budget/index.js'
import { UsageScanner } from '../../src/budget/usage.js'
import { SlidingWindow } from '../../src/budget/window.js'
import { parseConfig } from '../../src/config/load.js'
import type { Clock } from '../../src/util/clock.js'

const HOUR = 3_600_000

t.test('sliding window: at most the limit in any hour; what was spent comes back a slot at a time', async (t) => {
  const w = new SlidingWindow(10, HOUR)
  w.add(4, 0)
  w.add(6, 30 * 60_000)
  t.equal(w.remaining(59 * 60_000), 0)
  const freed = HOUR + 2 * 60_000 - 59 * 60_000
  t.equal(w.waitFor(1, 59 * 60_000), freed, 'the first four leave once their slot is an hour old')
  t.equal(w.remaining(HOUR + 2 * 60_000), 4, 'the four spent at 0:00 are back at 1:02')
  t.equal(w.waitFor(5, HOUR + 2 * 60_000), 30 * 60_000, 'five fit once the 0:30 slot leaves too')
  t.equal(w.remaining(2 * HOUR), 10)
  t.equal(w.waitFor(11, 0), Infinity, 'more than the limit never fits')
  // Spent steadily for three hours, never more than 10 in any span of an hour.
  const s = new SlidingWindow(10, HOUR)
  const times: number[] = []
  for (let now = 0; now < 3 * HOUR; now += 17_000) {
    if (s.waitFor(1, now) === 0) {
      s.add(1, now)
      times.push(now)
    }
  }
  for (let i = 10; i < times.length; i++) {
    t.ok(times[i]! - times[i - 10]! >= HOUR, `call ${i} is an hour after call ${i - 10}`)
  }
})

t.test('usage scanner: every split of an Anthropic stream counts 367; the model\'s text does not count', async (t) => {
  const stream = Buffer.from([
    'event: message_start\n',
    'data: {"type":"message_start","message":{"usage":{"input_tokens":300,"output_tokens":1}}}\n\n',
    'event: content_block_delta\n',
    'data: {"type":"content_block_delta","delta":{"text":"\\"output_tokens\\": 99999"}}\n\n',
    'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":67}}\n\n',
  ].join(''))
  for (let cut = 0; cut <= stream.length; cut++) {
    const u = new UsageScanner()
    u.push(stream.subarray(0, cut))
    u.push(stream.subarray(cut))
    if (u.tokens() !== 367) t.fail(`split at ${cut}: ${u.tokens()}`)
  }
  const bytewise = new UsageScanner()
  for (const byte of stream) bytewise.push(Buffer.from([byte]))
  t.equal(bytewise.tokens(), 367, 'one byte at a time')
  const chat = new UsageScanner()
  chat.push(Buffer.from('{"usage":{"prompt_tokens":100,"completion_tokens":23,"total_tokens":123}}'))
  t.equal(chat.tokens(), 123)
  const none = new UsageScanner()
  none.push(Buffer.alloc(400, 'x'))
  t.equal(none.reported(), undefined)
  t.equal(none.tokens(), 100, 'no usage: a token per four bytes')
})

function budgets (yaml: string): { b: Budgets, clock: Clock & { t: number } } {
  const config = parseConfig(`
instance_id: unit
ca: { dir: /tmp/unused }
issuers: { key: { type: file, path: /tmp/unused } }
tools:
  api: { match: { host: api.test }, issuer: key, budget: ${yaml} }
`, 'budget.yaml', {})
  const clock = { t: 0, now () { return this.t }, setTimeout: () => ({}), clearTimeout: () => {} }
  const b = new Budgets(clock)
  b.configure(config.tools)
  return { b, clock }
}

t.test('by task: task keys are bounded; the least recently seen is forgotten first', async (t) => {
  const { b } = budgets('[{ requests: 1, per: 1h, by: task }]')
  t.equal(b.admit('api', 'first'), undefined)
  t.match(b.admit('api', 'first'), { budget: 'requests:1/1h/task', first: true })
  t.match(b.admit('api', 'first'), { first: false }, 'one anomaly per task and window')
  for (let i = 0; i < MAX_TASKS; i++) b.admit('api', `random-${i}`)
  t.equal(b.admit('api', 'first'), undefined, `after ${MAX_TASKS} newer task names, "first" was dropped`)
  t.match(b.admit('api', `random-${MAX_TASKS - 1}`), { budget: 'requests:1/1h/task' }, 'the newest are still counted')
})

t.test('a reload keeps the count of an unchanged budget line, and starts a changed one afresh', async (t) => {
  const { b, clock } = budgets('[{ requests: 2, per: 1h }, { tokens: 100, per: 1h }]')
  t.ok(b.admit('api', undefined) instanceof BudgetCharge)
  const charge = b.admit('api', undefined) as BudgetCharge
  charge.observe(Buffer.from('{"usage":{"input_tokens":90,"output_tokens":20}}'))
  charge.settle(200)
  charge.settle(200)
  t.same(b.remaining().map((r) => r.value), [0, 0], 'two requests, 110 tokens (settled once)')
  t.match(b.admit('api', undefined), { budget: 'requests:2/1h/instance' })
  clock.t = HOUR + 3 * 60_000
  t.same(b.remaining().map((r) => r.value), [2, 100], 'an hour later all of it is back')
  const failed = b.admit('api', undefined) as BudgetCharge
  failed.observe(Buffer.alloc(4000, 'x'))
  failed.settle(500)
  t.same(b.remaining().map((r) => r.value), [1, 100], 'an error answer without usage costs its request, no tokens')
})

t.test('by: fleet without a fleet: section is refused at load (it would count N times the budget)', async (t) => {
  const where = /tools\.api\.budget\[0\]\.by: by: fleet needs a fleet: section/
  t.throws(() => budgets('[{ requests: 10, per: 1h, by: fleet }]'), where)
  t.throws(() => budgets('[{ requests: 10, tokens: 5, per: 1h }]'), /exactly one of requests, tokens/)
})

t.test('fleet budget with the broker lost: deny refuses at once; local spends this instance\'s share', async (t) => {
  const { b } = budgets('[{ requests: 9, per: 1h, by: instance }]')
  const lost: FleetLedger = {
    take: () => ({ ok: false, why: 'unavailable', retryAfterMs: 1000, share: 3 }),
    spend: () => {},
    remaining: () => 0,
  }
  const config = (onLoss: string): ReturnType<typeof parseConfig> => parseConfig(`
instance_id: unit
ca: { dir: /tmp/unused }
issuers: { key: { type: file, path: /tmp/unused } }
tools:
  api:
    match: { host: api.test }
    issuer: key
    budget: [{ requests: 9, per: 1h, by: fleet, on_broker_loss: ${onLoss} }]
fleet: { nats: { servers: [nats://127.0.0.1:4222] }, operator_keys: /tmp/unused }
`, 'budget.yaml', {})
  b.useFleet(lost)
  b.configure(config('deny').tools)
  t.match(b.admit('api', undefined), { why: 'unavailable', retryAfterSeconds: 1 })
  b.configure(config('local').tools)
  for (let i = 0; i < 3; i++) t.equal(b.admit('api', undefined), undefined, `call ${i + 1} of the share of 3`)
  t.match(b.admit('api', undefined), { why: 'exhausted', budget: 'requests:9/1h/fleet' })
})
