import t from 'tap'
import { ProxyAgent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { llm } from '../helpers/llm.js'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { needBinary } from '../helpers/system-binary.js'
import { natsBinary, startNats } from '../helpers/nats.js'
import { operatorKey } from '../helpers/fleet.js'
import { until } from '../helpers/until.js'

/**
 * A `by: fleet` budget of 100 requests across three sidecars on a real nats-server: under concurrent load exactly
 * 100 calls go out, and still exactly 100 when the broker is killed and started again mid-run. The window is a
 * year long so that no window edge falls inside the run.
 */
const nats = await natsBinary
const LIMIT = 100
const WORKERS = 12
const MAX_CALLS = 3000

const TITLE = 'fleet budget: exactly 100 requests across three sidecars, also across a broker restart; tokens too'
t.test(TITLE, { skip: nats.skip }, async (t) => {
  if (!needBinary(t, nats)) return
  const broker = await startNats(t, nats.path!)
  const up = await startUpstream()
  t.teardown(() => up.close())
  const llmUp = await startUpstream({ handler: llm })
  t.teardown(() => llmUp.close())
  const dir = t.testdir({ key: 'sk-fleet-budget-secret-0001\n' })
  const operator = await operatorKey()
  const tool = (name: string, extra = ''): string =>
    `  ${name}: { match: { host: ${name}.test, port: ${up.port} }, issuer: key, plaintext: true,
` +
    `    budget: [{ requests: ${LIMIT}, per: 365d, by: fleet${extra} }] }`
  const yaml = (id: string): string => `
instance_id: ${id}
ca: { dir: {{CA_DIR}} }
resolve: { steady.test: 127.0.0.1, restart.test: 127.0.0.1, tokens.test: 127.0.0.1 }
issuers: { key: { type: file, path: ${dir}/key } }
tools:
${tool('steady')}
${tool('restart')}
  tokens: { match: { host: tokens.test, port: ${llmUp.port} }, issuer: key, plaintext: true,
    budget: [{ tokens: 1000, per: 365d, by: fleet }] }
fleet:
  nats: { servers: [${broker.url}] }
  operator_keys: ${operator.jwksFile}
  heartbeat: 1s
`
  const fleet: RunningSidekey[] = []
  for (const id of ['budget-0', 'budget-1', 'budget-2']) fleet.push(await startSidekey(t, yaml(id)))
  await until(() => fleet.every((sk) => sk.app.fleet?.connected === true), 'three sidecars connected')
  const agents = fleet.map((sk) => new ProxyAgent({ uri: sk.proxyUrl }))
  t.teardown(() => Promise.all(agents.map((a) => a.close())))

  /**
   * WORKERS loops, round robin over the sidecars, until each sidecar has refused a call as spent (not merely
   * uncountable while the broker is away), or MAX_CALLS calls.
   */
  const load = async (host: string, during?: (call: number) => Promise<void>): Promise<Map<string, number>> => {
    const outcomes = new Map<string, number>()
    const spent = new Set<number>()
    let sent = 0
    const worker = async (): Promise<void> => {
      while (spent.size < agents.length && sent < MAX_CALLS) {
        const i = sent++
        const dispatcher = agents[i % agents.length]!
        const res = await request(`http://${host}:${up.port}/send`, { method: 'POST', body: '{}', dispatcher })
        const body = await res.body.text()
        const outcome = res.statusCode === 200 ? 'sent' : JSON.parse(body).retry_after > 60 ? 'spent' : 'uncounted'
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
        if (outcome === 'spent') spent.add(i % agents.length)
        // The broker is away: wait a little rather than spin through the calls.
        if (outcome === 'uncounted') await new Promise((resolve) => setTimeout(resolve, 50))
        await during?.(i)
      }
    }
    await Promise.all(Array.from({ length: WORKERS }, worker))
    return outcomes
  }
  const seen = (host: string): number => up.seen.filter((s) => s.headers.host?.startsWith(host) === true).length

  const steady = await load('steady.test')
  t.equal(steady.get('sent'), LIMIT, `${LIMIT} calls went out (${JSON.stringify([...steady])})`)
  t.equal(steady.get('uncounted'), undefined, 'none refused for want of the broker')
  t.equal(seen('steady.test'), LIMIT, 'the upstream saw exactly the budget')

  let restarted: Promise<void> | undefined
  const restart = await load('restart.test', async (i) => {
    if (i !== 30 || restarted !== undefined) return
    restarted = (async () => {
      await broker.stop()
      await until(() => fleet.every((sk) => sk.app.fleet?.connected !== true), 'every sidecar to see the broker gone')
      await broker.start()
      await until(() => fleet.every((sk) => sk.app.fleet?.connected === true), 'reconnected')
    })()
    await restarted
  })
  t.ok(restarted !== undefined)
  t.equal(restart.get('sent'), LIMIT, `across the restart, ${LIMIT} calls went out (${JSON.stringify([...restart])})`)
  t.equal(seen('restart.test'), LIMIT)
  t.ok((restart.get('uncounted') ?? 0) > 0, 'calls were refused while the broker was away (on_broker_loss: deny)')
  const refused = fleet.flatMap((sk) => sk.log.events('credential.used'))
    .filter((e) => e.outcome === 'budget_exhausted')
  t.ok(refused.every((e) => e.budget === 'requests:100/365d/fleet'))

  // Tokens are counted after the fact: each sidecar may finish one call past its lease, so 1000 tokens at 123 a
  // call let 9 to 11 calls through (at least 9: the leases sum to the budget before any is refused).
  const refusedBy = new Set<number>()
  let passed = 0
  for (let i = 0; i < 40 && refusedBy.size < agents.length; i++) {
    const res = await request(`http://tokens.test:${llmUp.port}/v1/chat/completions`, {
      method: 'POST', body: '{"model":"gpt-test"}', dispatcher: agents[i % agents.length]!,
    })
    await res.body.dump()
    if (res.statusCode === 200) passed++
    else if (res.statusCode === 429) refusedBy.add(i % agents.length)
  }
  t.equal(refusedBy.size, 3, 'every sidecar refuses once the fleet has spent the tokens')
  t.ok(passed >= 9 && passed <= 11, `${passed} calls of 123 tokens went out under a fleet budget of 1000`)
  t.equal(llmUp.seen.length, passed)
})
