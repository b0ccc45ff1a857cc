import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { listeningLine } from '../helpers/cli.js'
import { connectTo, readHead } from '../protocols/helpers.js'
import { tlsThroughTunnel } from '../helpers/connect.js'
import { processCpuUs, processTreeRss, stopChild } from './proc.js'

/**
 * The cost of distinct SNI names (docs/threat-model.md, "The agent": an agent can name as many hosts as it likes).
 * Under a wildcard tool every new name is a new leaf: CONNECT, then a full TLS handshake whose leaf is minted
 * (key, certificate, secure context) and kept in the LRU leaf cache (`ca.leaf_cache_size`, 1000 by default).
 * Names no tool covers are refused at CONNECT (403), before any TLS or mint. CPU time is the sidekey process's
 * own (/proc), per name; RSS is read at checkpoints: past the cache's bound it must level off.
 */

export interface SniOptions {
  /** Where the config and CA go. */
  dir: string
  /** The shipped CLI (dist/cli.js). */
  cli: string
  /** Distinct names per phase (10,000 in a real run). */
  count: number
  /** Each phase stops here even if `count` is not reached. */
  timeLimitMs: number
  /** `taskset -c CPU` for the sidekey child, as the other proxies run. */
  pinCpu: string | undefined
}

interface Phase { done: number, cpuUs: number, ms: number, rss: number[] }

const CONCURRENCY = 8
const SUFFIX = 'sni.bench.test'

export async function sniTable (o: SniOptions, out: string[]): Promise<void> {
  mkdirSync(o.dir, { recursive: true })
  const config = join(o.dir, 'sidekey.yaml')
  writeFileSync(config, `instance_id: bench-sni
ca: { dir: ${JSON.stringify(join(o.dir, 'ca'))} }
issuers: { local: { type: local_jwt } }
tools: { wildcard: { match: { host: "*.${SUFFIX}" }, issuer: local } }
`)
  const args = [o.cli, 'run', '--config', config, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']
  const child = o.pinCpu === undefined
    ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } })
    : spawn('taskset', ['-c', o.pinCpu, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } })
  try {
    const listening = await listeningLine(child, 30_000)
    const port = Number(listening.proxy.split(':').pop())
    const caPem = readFileSync(listening.ca, 'utf8')
    const pid = child.pid!
    const checkpoints = [o.count / 10, o.count / 2, o.count].map(Math.round)
    const phase = async (each: (i: number) => Promise<void>): Promise<Phase> => {
      const cpu0 = processCpuUs(pid)
      const t0 = performance.now()
      const rss: number[] = []
      let next = 0
      let done = 0
      let failed = 0
      let firstError: string | undefined
      const worker = async (): Promise<void> => {
        while (next < o.count && performance.now() - t0 < o.timeLimitMs) {
          await each(next++).catch((err: Error) => { failed++; firstError ??= err.message })
          done++
          if (checkpoints.includes(done)) rss.push(processTreeRss(pid))
        }
      }
      await Promise.all(Array.from({ length: CONCURRENCY }, worker))
      if (failed > 0) throw new Error(`${failed} of ${done} names failed, first: ${firstError}`)
      return { done, cpuUs: processCpuUs(pid) - cpu0, ms: performance.now() - t0, rss }
    }
    const rest = processTreeRss(pid)
    const minted = await phase(async (i) => {
      const socket = await tlsThroughTunnel(port, `h${i}.${SUFFIX}:443`, { servername: `h${i}.${SUFFIX}`, ca: caPem })
      socket.on('error', () => {}).destroy()
    })
    // 100 names in turn: minted once more (evicted long since), then handshakes with a cached leaf.
    const cached = await phase(async (i) => {
      const socket = await tlsThroughTunnel(port, `h${i % 100}.${SUFFIX}:443`, { servername: `h${i % 100}.${SUFFIX}`, ca: caPem })
      socket.on('error', () => {}).destroy()
    })
    const refused = await phase(async (i) => {
      const socket = await connectTo(port)
      socket.on('error', () => {})
      const authority = `h${i}.elsewhere.bench.test:443`
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
      const { status } = await readHead(socket).finally(() => socket.destroy())
      if (status !== 403) throw new Error(`CONNECT to a name no tool covers answered ${status}, expected 403`)
    })
    const mib = (b: number): string => (b / 2 ** 20).toFixed(0)
    const row = (what: string, p: Phase): string => `| ${what} | ${p.done.toLocaleString('en')} | ${(p.cpuUs / p.done).toFixed(0)} µs | ` +
      `${(p.done / (p.ms / 1000)).toFixed(0)}/s | ${p.rss.map(mib).join(' → ')} |`
    out.push('### Distinct SNI names (leaf minting), sidekey as shipped', '')
    out.push(`${CONCURRENCY} clients, each name once: CONNECT then a TLS handshake verified against the CA (a wildcard tool ` +
      `\`*.${SUFFIX}\`), or a CONNECT no tool covers (403, no TLS). CPU is the sidekey process's (/proc); RSS MB after ` +
      `${checkpoints.map((c) => c.toLocaleString('en')).join(', ')} names (at rest before: ${mib(rest)} MB); leaf_cache_size 1000.`, '')
    out.push('| names | count | CPU per name | rate | RSS MB |', '|---|--:|--:|--:|--:|')
    out.push(row('new name: CONNECT + handshake + mint', minted))
    out.push(row('cached name: CONNECT + handshake (100 names in turn)', cached))
    out.push(row('refused at CONNECT: no tool covers it', refused), '')
  } finally {
    await stopChild(child, () => child.kill('SIGTERM'))
  }
}
