import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Budgets, BudgetCharge } from '../../src/budget/index.js'
import { UsageScanner } from '../../src/budget/usage.js'
import { parseConfig } from '../../src/config/load.js'
import { FleetBudgetLedger } from '../../src/fleet/budget-ledger.js'
import { openBucket } from '../../src/fleet/bucket.js'
import { fleet as fleetSchema } from '../../src/config/schema.js'
import { systemClock } from '../../src/util/clock.js'

/**
 * What a budget check adds per call, in-process: a request budget by instance and by task (1,000 tasks in turn),
 * a token budget's admission plus its usage scan of a streamed answer, and a `by: fleet` budget against a real
 * nats-server on 127.0.0.1 (a lease of 5 taken by compare-and-set, so one broker round trip per five calls).
 * Run: TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/budget.ts
 */
function budgets (rule: string, fleet = ''): Budgets {
  const config = parseConfig(`
instance_id: bench
ca: { dir: /tmp/unused }
issuers: { key: { type: file, path: /tmp/unused } }
tools:
  api: { match: { host: api.test }, issuer: key, budget: [${rule}] }
${fleet}`, 'bench.yaml', {})
  const b = new Budgets(systemClock)
  b.configure(config.tools)
  return b
}

function perCallUs (what: string, n: number, fn: (i: number) => void): void {
  for (let i = 0; i < Math.min(n, 1000); i++) fn(i)
  const start = process.cpuUsage()
  for (let i = 0; i < n; i++) fn(i)
  const used = process.cpuUsage(start)
  console.log(`| ${what} | ${((used.user + used.system) / n).toFixed(2)} |`)
}

// A 60-chunk Chat Completions stream with its usage chunk, as relayed in 4 KiB pieces.
const chunk = (content: string): string => {
  const event = { id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }], usage: null }
  return `data: ${JSON.stringify(event)}\n\n`
}
const usage = { prompt_tokens: 100, completion_tokens: 60, total_tokens: 160 }
const stream = Buffer.from(Array.from({ length: 60 }, (_, i) => chunk(`token ${i} `)).join('') +
  `data: ${JSON.stringify({ id: 'c', choices: [], usage })}\n\n` +
  'data: [DONE]\n\n')
const PIECE = 4096 // bytes per relayed piece
const pieces: Buffer[] = []
for (let at = 0; at < stream.length; at += PIECE) pieces.push(stream.subarray(at, at + PIECE))

console.log(`streamed answer ${stream.length} B in ${pieces.length} pieces\n`)
console.log('| per call (local) | CPU µs |\n| --- | ---: |')
const requests = budgets('{ requests: 1000000000, per: 1h }')
perCallUs('requests, by: instance', 200_000, () => { requests.admit('api', undefined) })
const tasks = budgets('{ requests: 1000000000, per: 1h, by: task }')
const names = Array.from({ length: 1000 }, (_, i) => `task-${i}`)
perCallUs('requests, by: task (1,000 tasks in turn)', 200_000, (i) => { tasks.admit('api', names[i % 1000]) })
const tokens = budgets('{ tokens: 1000000000000, per: 24h }')
perCallUs('tokens: admission and settle, no body', 200_000, () => {
  (tokens.admit('api', undefined) as BudgetCharge).settle(200)
})
perCallUs(`tokens: usage scan of the ${stream.length} B stream`, 20_000, () => {
  const u = new UsageScanner()
  for (const p of pieces) u.push(p)
  u.tokens()
})

const bin = process.env.NATS_SERVER ?? 'nats-server'
const store = mkdtempSync(join(tmpdir(), 'bench-nats-'))
const port = 14_000 + Math.floor(Math.random() * 1000)
const args = ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store]
const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
try {
  await new Promise<void>((resolve, reject) => {
    let text = ''
    child.stderr.on('data', (d: Buffer) => { text += d.toString(); if (text.includes('Server is ready')) resolve() })
    child.once('error', reject)
    child.once('exit', () => reject(new Error(`nats-server exited: ${text.slice(-300)}`)))
  })
  const config = fleetSchema.parse({ nats: { servers: [`nats://127.0.0.1:${port}`] }, operator_keys: '/unused' })
  const { nc, kv } = await openBucket(config, { servers: config.nats.servers })
  const ledger = new FleetBudgetLedger(() => kv, () => true, systemClock, 'bench')
  const fleetYaml = `fleet: { nats: { servers: [nats://127.0.0.1:${port}] }, operator_keys: /unused }\n`
  const fleet = budgets('{ requests: 1000000000, per: 365d, by: fleet }', fleetYaml)
  fleet.useFleet(ledger)
  const run = async (label: string, n: number, gapMs: number): Promise<void> => {
    const waits: number[] = []
    const cpu = process.cpuUsage()
    let busy = 0
    for (let i = 0; i < n; i++) {
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs))
      const t0 = performance.now()
      const v = fleet.admit('api', undefined)
      if (v instanceof Promise) await v
      const took = performance.now() - t0
      busy += took
      waits.push(took)
    }
    const used = process.cpuUsage(cpu)
    waits.sort((a, b) => a - b)
    const q = (p: number): string => (waits[Math.min(n - 1, Math.floor(p * n))]! * 1000).toFixed(1)
    const cpuUs = ((used.user + used.system) / n).toFixed(1)
    console.log(`| ${label} | ${cpuUs} | ${(busy * 1000 / n).toFixed(1)} | ${q(0.5)} / ${q(0.99)} |`)
  }
  console.log('\n| by: fleet (a lease of 5) | CPU µs per call | wait µs, mean | wait µs, p50 / p99 |')
  console.log('| --- | ---: | ---: | ---: |')
  await run('5,000 calls back to back', 5_000, 0)
  await run('1,000 calls 1 ms apart', 1_000, 1)
  await nc.close()
} finally {
  child.kill('SIGKILL')
  rmSync(store, { recursive: true, force: true })
}
