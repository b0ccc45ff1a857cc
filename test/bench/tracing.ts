// Cost of tracing on the request path: the same sidekey config with tracing off, at ratio 0.01 and at 1, measured
// in one run (relative numbers: the machine is shared). CPU is the whole process: client, sidekeys, upstream.
// Run: TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/tracing.ts [requests]
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { parseConfig } from '../../src/config/load.js'
import { createLogger } from '../../src/audit/log.js'
import { Sidekey } from '../../src/app.js'
import { startUpstream } from '../helpers/upstream.js'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const requests = Number(process.argv[2] ?? 3000)
const up = await startUpstream()
// A collector that reads and accepts each export without decoding it: its CPU is in this process too.
let exported = 0
const collector = createServer((req, res) => {
  req.on('data', (c: Buffer) => { exported += c.length })
  req.on('end', () => { res.writeHead(200, { 'content-length': 0 }); res.end() })
})
await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve))
const otlp = { url: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces` }
const yaml = (tracing: string): string => `
instance_id: bench
ca: { dir: ${join(mkdtempSync(join(tmpdir(), 'sidekey-bench-')), 'ca')} }
resolve: { api.tool.test: 127.0.0.1 }
${tracing}
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true, placeholder: sidekey }
log: { level: silent }
`
const modes: Array<[string, string]> = [
  ['off', ''], ['ratio 0.01', `tracing: { endpoint: ${otlp.url}, ratio: 0.01, delay: 1s }`],
  ['ratio 1', `tracing: { endpoint: ${otlp.url}, ratio: 1, delay: 1s }`],
  // A second instance with tracing off: how far two identical sidekeys in one run differ (the noise floor).
  ['off again', ''],
]
const apps = await Promise.all(modes.map(async ([, t]) => await Sidekey.start({
  config: parseConfig(yaml(t), 'bench.yaml', {}),
  listen: '127.0.0.1:0',
  admin: '127.0.0.1:0',
  logger: createLogger({ level: 'silent' }),
})))
const pools = apps.map((a) => new Pool(`http://${a.proxyAddress}`, { connections: 8 }))
const one = async (pool: Pool): Promise<void> => {
  const host = `api.tool.test:${up.port}`
  const headers = { host, authorization: 'Bearer sidekey' }
  const res = await pool.request({ method: 'GET', path: `http://${host}/v1/x`, headers })
  await res.body.dump()
}
const totals = modes.map(() => ({ wall: 0, cpu: 0 }))
// A warm-up per mode (JIT, pools, first leaf), then rounds interleaving the modes in turning order so that load on
// the machine falls on all three alike.
for (const pool of pools) for (let i = 0; i < 400; i += 8) await Promise.all(Array.from({ length: 8 }, () => one(pool)))
for (let round = 0; round < 6; round++) {
  for (let k = 0; k < modes.length; k++) {
    const m = (k + round) % modes.length
    const n = requests / 6
    const cpu = process.cpuUsage()
    const start = performance.now()
    for (let i = 0; i < n; i += 8) await Promise.all(Array.from({ length: 8 }, () => one(pools[m]!)))
    totals[m]!.wall += performance.now() - start
    const used = process.cpuUsage(cpu)
    totals[m]!.cpu += (used.user + used.system) / 1000
  }
}
const base = totals[0]!
for (let m = 0; m < modes.length; m++) {
  const t = totals[m]!
  const perRequest = (ms: number): string => (ms * 1000 / requests).toFixed(1)
  console.log(`${modes[m]![0].padEnd(11)} ${perRequest(t.wall)} us/req wall, ${perRequest(t.cpu)} us/req CPU ` +
    `(x${(t.cpu / base.cpu).toFixed(2)} CPU of off)`)
}
console.log(`exported: ${exported} bytes of OTLP`)
await Promise.all(pools.map((p) => p.close()))
await Promise.all(apps.map((a) => a.close()))
collector.close()
await up.close()
