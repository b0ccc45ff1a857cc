import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, rmSync, createReadStream, readFileSync, writeFileSync } from 'node:fs'
import { cpus, freemem, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { Agent, Pool, ProxyAgent, request, type Dispatcher } from 'undici'
import { upstreamPki } from '../helpers/upstream.js'
import { listeningIn, listeningLine, type ListeningLine } from '../helpers/cli.js'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { LeafCache } from '../../src/tls/leaf-cache.js'
import { localJwtIssuer } from '../../src/config/schema.js'
import { createLocalJwtIssuer } from '../../src/credentials/issuers/local-jwt.js'
import { systemClock } from '../../src/util/clock.js'
import { hasWrk, undiciLoad, wrkLoad, type LoadResult } from './load.js'
import { FRESH_HOST, HTTP_HOST, HTTPS_HOST, WARM_HOST, loopbackLookup, sidekeyYaml, type ProxyStart } from './proxy-server.js'
import { compileForChildren } from './compile.js'
import { sniTable } from './sni.js'
import { AuditChain } from '../../src/audit/trail/chain.js'
import { publicJwk, signCheckpoint } from '../../src/audit/trail/key.js'
import { squidBinary, startSquid, type SquidStart } from './squid.js'
import { processCpuUs, processTreeRss, stopChild } from './proc.js'
import { scrubPerRequestTable, scrubTable } from './scrub.js'
import { profileTable } from './profile.js'
import { mcpTable } from './mcp.js'

/**
 * `npm run bench`: sidekey against a bare undici forwarder (the in-run floor) and no proxy at all, on loopback,
 * in one run. Prints Markdown to stdout, progress to stderr. Options:
 *   --quick            1 × 2 s per cell instead of 3 × 5 s
 *   --smoke            a tiny bounded load (the smoke test): proves the bench starts, runs and stops; only the
 *                      sections start,main,idle,mint,mcp,scrub unless --sections says otherwise
 *   --no-wrk           use the built-in undici generator for HTTP even when wrk is installed
 *   --only=http|https  the main table for one protocol only (profiling)
 *   --sections=start,main,chain,scale,rate,idle,heap,mint,percall,mcp,scrub   which parts to run (default all)
 *   --reps=N --duration=SECONDS             override the repeats and the length of each cell
 *   --profile=DIR      run the sidekey child (or --profile-target=bare) with --cpu-prof, profiles written to DIR
 *   --no-pin           let every process use every core (default on 2+ cores: each proxy pinned to core 1, the
 *                      load generator and the upstream to core 0, as a sidecar runs under a one-CPU limit)
 *   --no-squid         leave squid out even when it is installed (Debian squid-openssl)
 *   --starts=N         start-to-ready and RSS-at-rest samples per proxy (default 5)
 *   --settle=SECONDS   the last start of each proxy is measured again this long after ready (default 30)
 *   --baseline=CLI     also run another build of sidekey (its `cli.js`, e.g. an older checkout's dist/cli.js) as
 *                      'baseline', alternated with the others in the start, main, scale, rate and idle sections:
 *                      before and after in one run
 *   --sections=profile added latency over direct (mean, p50, p99) at 1,000 req/s and at 16 connections, 0 B and 1 KiB
 *                      bodies, HTTP and HTTPS; the first request after a restart to a tool host and to a new name
 *                      (profile.ts); --samples=N fresh processes for the latter (default 5)
 *   --sections=sni     (not in the default set) distinct SNI names against the leaf cache: --sni-names=N per phase
 *                      (default 10,000; 50 with --smoke), each phase stopped after 120 s (sni.ts)
 */

interface Options {
  reps: number
  durationMs: number
  warmupMs: number
  connections: number
  scaling: number[]
  rate: number
  rateDurationMs: number
  idleTunnels: number
  mintCold: number
  mintCached: number
  sniNames: number
  /** profile: each cell's length, first-contact samples, the idle pause before the second contact. */
  profileCellMs: number
  samples: number
  idleMs: number
  wrk: boolean
  only: 'http' | 'https' | undefined
  sections: Set<string>
  profile: string | undefined
  profileTarget: 'sidekey' | 'bare'
  /** Pin proxies to core 1, everything else to core 0. */
  pin: boolean
  squid: boolean
  starts: number
  /** How long after ready the last start of each proxy is measured again (RSS settled). */
  settleMs: number
  /** Another sidekey build's cli.js, run beside this one (before/after in one run). */
  baseline: string | undefined
}

function options (argv: string[]): Options {
  const flag = (name: string): boolean => argv.includes(`--${name}`)
  const value = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const smoke = flag('smoke')
  const quick = flag('quick')
  const only = value('only')
  return {
    reps: Number(value('reps') ?? (smoke || quick ? 1 : 3)),
    durationMs: Number(value('duration') ?? (smoke ? 0.3 : quick ? 2 : 5)) * 1000,
    warmupMs: smoke ? 100 : quick ? 500 : 1000,
    connections: smoke ? 4 : 32,
    scaling: smoke ? [2, 4] : [8, 64, 256],
    rate: smoke ? 50 : 500,
    rateDurationMs: smoke ? 300 : quick ? 2000 : 5000,
    idleTunnels: smoke ? 10 : 1000,
    mintCold: smoke ? 3 : 20,
    mintCached: smoke ? 100 : 10_000,
    sniNames: Number(value('sni-names') ?? (smoke ? 50 : 10_000)),
    profileCellMs: Number(value('duration') ?? (smoke ? 0.2 : quick ? 2 : 3)) * 1000,
    samples: Number(value('samples') ?? (smoke ? 1 : 5)),
    idleMs: smoke ? 200 : 2000,
    wrk: !smoke && !flag('no-wrk') && hasWrk(),
    only: only === 'http' || only === 'https' ? only : undefined,
    // The smoke run leaves out percall: two more sidekey children would not prove anything the main cells do not.
    // The smoke test (tap, 100 s budget beside other test files) runs the sections whose code differs most; chain,
    // scale, rate, heap and percall reuse cell() and startProxy() and are left to real runs; mcp has its own load.
    sections: new Set((value('sections') ?? (smoke ? 'start,main,idle,mint,mcp,scrub' : 'start,main,chain,scale,rate,idle,heap,mint,percall,mcp,scrub,profile')).split(',')),
    profile: value('profile'),
    profileTarget: value('profile-target') === 'bare' ? 'bare' : 'sidekey',
    pin: !flag('no-pin') && cpus().length >= 2 && hasTaskset(),
    squid: !flag('no-squid') && squidBinary() !== undefined,
    starts: Number(value('starts') ?? (smoke ? 1 : 5)),
    settleMs: Number(value('settle') ?? (smoke ? 0.2 : 30)) * 1000,
    baseline: value('baseline'),
  }
}

type Proto = 'http' | 'https'
type Target = 'direct' | ProxyKind
type ProxyKind = 'bare' | 'sidekey' | 'squid' | 'baseline'
/** The core a proxy runs on when pinned, and the one the load generator and upstream share. */
const PROXY_CPU = '1'
const LOAD_CPU = '0'

interface ProxyChild {
  kind: ProxyKind
  child: ChildProcess
  port: number
  caPem: string
  rss (): Promise<number>
  /** CPU time (user + system) the child has used so far, µs. */
  cpuUs (): Promise<number>
  stop (): Promise<void>
}

/** Where the children's compiled JavaScript lives (compile.ts); set once in main(). */
let childDir = ''
/** --baseline: the other sidekey build's cli.js; set once in main(). */
let baselineCli = ''
/** Every cell's requests: enough that no cell ever stops on the count before its time is up. */
const MAX_REQUESTS = 10_000_000

function reply<T> (child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`bench child exited (${code})`))
    child.once('exit', onExit)
    child.once('message', (m) => {
      child.off('exit', onExit)
      const err = (m as { error?: string }).error
      if (err !== undefined) reject(new Error(err))
      else resolve(m as T)
    })
  })
}

async function startUpstreams (): Promise<{ child: ChildProcess, http: number, https: number, caFile: string, caPem: string }> {
  const pki = await upstreamPki()
  const cert = await pki.cert(HTTPS_HOST)
  const child = fork(join(childDir, 'upstream-server.js'), [], { execArgv: [] })
  child.send({ ...cert, sni: { [FRESH_HOST]: await pki.cert(FRESH_HOST), [WARM_HOST]: await pki.cert(WARM_HOST) } })
  const ports = await reply<{ http: number, https: number }>(child)
  return { child, ...ports, caFile: pki.caFile, caPem: readFileSync(pki.caFile, 'utf8') }
}

/**
 * A proxy under test in its own process. sidekey runs as a pod runs it, the bundled `dist/cli.js run` (sidekeyCli);
 * `inProcess` (and every variant the config cannot express, such as an unsealed logger) runs the app from the
 * sources in a forked child instead (proxy-server.ts), as bare always does.
 */
async function startProxy (kind: 'sidekey' | 'bare' | 'baseline', start: Omit<ProxyStart, 'kind'>, profileDir: string | undefined, pinned: boolean, nodeArgs: string[] = [], inProcess = false): Promise<ProxyChild> {
  if (kind === 'baseline') return await sidekeyCli(start, undefined, pinned, nodeArgs, baselineCli, 'baseline')
  if (kind === 'sidekey' && !inProcess && start.chain !== false) return await sidekeyCli(start, profileDir, pinned, nodeArgs)
  const child = forkPinned(join(childDir, 'proxy-server.js'), [...nodeArgs, ...(profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])], pinned)
  child.send({ kind, ...start })
  const { port, caPem } = await reply<{ port: number, caPem: string }>(child)
  return {
    kind,
    child,
    port,
    caPem,
    rss: async () => { child.send('rss'); return (await reply<{ rss: number }>(child)).rss },
    cpuUs: async () => { child.send('rss'); return (await reply<{ cpuUs: number }>(child)).cpuUs },
    stop: async () => { await stopChild(child, () => child.send('stop')) },
  }
}

/** The shipped CLI, the bundle `npm run build` writes (`npm run bench` builds first). */
const DIST_CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli.js')

/** `node dist/cli.js run` with the bench config, its log lines (stdout, as in a pod) going to DIR/audit.log. */
async function sidekeyCli (start: Omit<ProxyStart, 'kind'>, profileDir: string | undefined, pinned: boolean, nodeArgs: string[], cli = DIST_CLI, kind: 'sidekey' | 'baseline' = 'sidekey'): Promise<ProxyChild> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`)
  mkdirSync(start.dir, { recursive: true })
  const config = join(start.dir, 'sidekey.yaml')
  writeFileSync(config, sidekeyYaml({ kind: 'sidekey', ...start }))
  const logFile = join(start.dir, 'audit.log')
  const log = openSync(logFile, 'a')
  const from = fstatSync(log).size
  const args = [...nodeArgs, ...(profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), cli, 'run', '--config', config, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']
  const child = spawn(pinned ? 'taskset' : process.execPath, pinned ? ['-c', PROXY_CPU, process.execPath, ...args] : args, { stdio: ['ignore', log, 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } })
  closeSync(log)
  const listening = await listeningInLog(logFile, from, child)
  const pid = child.pid!
  return {
    kind,
    child,
    port: Number(listening.proxy.split(':').pop()),
    caPem: readFileSync(listening.ca, 'utf8'),
    rss: async () => processTreeRss(pid),
    cpuUs: async () => processCpuUs(pid),
    stop: async () => { await stopChild(child, () => child.kill('SIGTERM')) },
  }
}

/** The `listening` line a starting sidekey logs (proxy address, CA path), after byte `from` of its log file; bounded. */
async function listeningInLog (file: string, from: number, child: ChildProcess): Promise<ListeningLine> {
  const deadline = performance.now() + 20_000
  for (;;) {
    const line = listeningIn(readFileSync(file).subarray(from).toString('utf8'))
    if (line !== undefined) return line
    if (child.exitCode !== null) throw new Error(`sidekey exited (${child.exitCode}) before listening; see ${file}`)
    if (performance.now() > deadline) throw new Error(`sidekey did not log "listening" within 20 s; see ${file}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A Node child on the proxy core from its first instruction: `taskset -c 1 node …`, IPC channel intact. */
function forkPinned (module: string, execArgv: string[], pinned: boolean): ChildProcess {
  return pinned
    ? fork(module, [], { execPath: 'taskset', execArgv: ['-c', PROXY_CPU, process.execPath, ...execArgv] })
    : fork(module, [], { execArgv })
}

function hasTaskset (): boolean {
  return spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0
}

/** Moves a running process and all its threads to `cpus`. */
function pin (pid: number, cpus: string): void {
  spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
}

async function squidChild (start: SquidStart, caPem: string): Promise<ProxyChild> {
  const sq = await startSquid(start)
  return { kind: 'squid', child: sq.child, port: sq.port, caPem, rss: async () => processTreeRss(sq.pid), cpuUs: async () => processCpuUs(sq.pid), stop: () => sq.stop() }
}

interface Env {
  o: Options
  dir: string
  up: { http: number, https: number, caPem: string, child: ChildProcess }
  proxies: { sidekey: ProxyChild, bare: ProxyChild, squid?: ProxyChild, baseline?: ProxyChild }
  /** The proxies in this run: squid only when installed. */
  kinds: ProxyKind[]
  start: Omit<ProxyStart, 'kind'>
  served: number
}

const HEADERS = { authorization: 'Bearer sidekey' }

/** One bounded load against one target; the dispatcher is warmed (connections, tunnels, handshakes) first. */
async function cell (env: Env, proto: Proto, target: Target, connections: number, durationMs: number, rate?: number, resource = '/x'): Promise<Cell> {
  const { up } = env
  const host = proto === 'http' ? `${HTTP_HOST}:${up.http}` : `${HTTPS_HOST}:${up.https}`
  const proxy = target === 'direct' ? undefined : env.proxies[target]!
  const conns0 = await upstreamConnections(env)
  let result: LoadResult
  let cpu0 = 0
  if (proto === 'http' && env.o.wrk && rate === undefined) {
    cpu0 = await proxy?.cpuUs() ?? 0
    const connectTo = `http://127.0.0.1:${proxy === undefined ? up.http : proxy.port}`
    const path = proxy === undefined ? resource : `http://${host}${resource}`
    result = await wrkLoad({ connectTo, path, headers: { Host: host, ...HEADERS }, connections, durationMs, dir: env.dir })
  } else {
    let dispatcher: Dispatcher
    let origin: string
    let path = resource
    if (proto === 'http') {
      origin = `http://127.0.0.1:${proxy === undefined ? up.http : proxy.port}`
      dispatcher = new Pool(origin, { connections, pipelining: 1 })
      if (proxy !== undefined) path = `http://${host}${resource}`
    } else {
      origin = `https://${host}`
      dispatcher = proxy === undefined
        ? new Agent({ connections, pipelining: 1, connect: { ca: up.caPem, lookup: loopbackLookup } })
        : new ProxyAgent({ uri: `http://127.0.0.1:${proxy.port}`, connections, pipelining: 1, requestTls: { ca: proxy.caPem, servername: HTTPS_HOST } })
    }
    const base = { dispatcher, origin, path, headers: { host, ...HEADERS }, connections, maxRequests: MAX_REQUESTS }
    try {
      const warm = await undiciLoad({ ...base, durationMs: env.o.warmupMs })
      if (target === 'sidekey') env.served += warm.requests
      cpu0 = await proxy?.cpuUs() ?? 0
      result = await undiciLoad({ ...base, durationMs, ...(rate === undefined ? {} : { rate }) })
    } finally {
      await dispatcher.close()
    }
  }
  if (target === 'sidekey') env.served += result.requests
  if (result.errors > 0) process.stderr.write(`  ! ${result.errors} errors\n`)
  const conns = (await upstreamConnections(env))[proto] - conns0[proto]
  if (conns > connections + 1) progress(`  ${proto} ${target}: upstream accepted ${conns} connections`)
  if (proxy === undefined) return { ...result, rss: 0, cpuPerReq: 0 }
  const rss = await proxy.rss()
  const cpuPerReq = (await proxy.cpuUs() - cpu0) / Math.max(1, result.requests)
  return { ...result, rss, cpuPerReq }
}

async function upstreamConnections (env: Env): Promise<{ http: number, https: number }> {
  env.up.child.send('counts')
  return await reply<{ http: number, https: number }>(env.up.child)
}

type Cell = LoadResult & { rss: number, cpuPerReq: number }

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const f0 = (n: number): string => Math.round(n).toLocaleString('en-US')
const f2 = (n: number): string => n.toFixed(2)
const mb = (bytes: number): string => (bytes / 1048576).toFixed(0)
const ratio = (a: number, b: number): string => b === 0 ? '–' : `${(a / b).toFixed(2)}×`
const progress = (s: string): void => { process.stderr.write(s + '\n') }

interface Summary { rps: number, p50: number, p99: number, rss: number, cpu: number, errors: number, generator: string }

async function mainTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  const protos: Proto[] = o.only === undefined ? ['http', 'https'] : [o.only]
  const targets: Target[] = ['direct', ...env.kinds]
  const runs = new Map<string, Cell[]>()
  for (const proto of protos) for (const t of targets) runs.set(`${proto}/${t}`, [])
  // Warm every path once (JIT, pools, leaves) before anything is recorded.
  for (const proto of protos) for (const t of targets) await cell(env, proto, t, o.connections, o.warmupMs)
  for (let r = 0; r < o.reps; r++) {
    for (const proto of protos) {
      // Alternate the order every round so neither proxy always runs first (A/B, B/A, ...).
      const order: Target[] = r % 2 === 0 ? [...env.kinds, 'direct'] : [...[...env.kinds].reverse(), 'direct']
      for (const t of order) {
        const res = await cell(env, proto, t, o.connections, o.durationMs)
        progress(`  ${proto} ${t} round ${r + 1}: ${f0(res.rps)} req/s p99 ${f2(res.p99ms)} ms, ${f0(res.cpuPerReq)} µs CPU/req`)
        runs.get(`${proto}/${t}`)!.push(res)
      }
    }
  }
  const sum = (key: string): Summary => {
    const xs = runs.get(key)!
    return { rps: median(xs.map((x) => x.rps)), p50: median(xs.map((x) => x.p50ms)), p99: median(xs.map((x) => x.p99ms)), rss: Math.max(...xs.map((x) => x.rss)), cpu: median(xs.map((x) => x.cpuPerReq)), errors: xs.reduce((a, x) => a + x.errors, 0), generator: xs[0]!.generator }
  }
  out.push(`### Throughput: ${o.connections} keep-alive connections, median of ${o.reps} × ${o.durationMs / 1000} s per cell${o.pin ? `, each proxy pinned to core ${PROXY_CPU} (load and upstream on core ${LOAD_CPU})` : ', no pinning'}`, '')
  const withSquid = env.kinds.includes('squid')
  out.push(`| load | proxy | req/s | p50 ms | p99 ms | proxy RSS MB | proxy CPU µs/req | req/s ×bare | req/s ×direct | p99 ×bare |${withSquid ? ' req/s ×squid | p99 ×squid |' : ''} errors |`)
  out.push(`|---|---|--:|--:|--:|--:|--:|--:|--:|--:|${withSquid ? '--:|--:|' : ''}--:|`)
  const ratios: string[] = []
  const roundRatios: string[] = []
  for (const proto of protos) {
    const d = sum(`${proto}/direct`)
    const b = sum(`${proto}/bare`)
    const s = sum(`${proto}/sidekey`)
    const q = withSquid ? sum(`${proto}/squid`) : undefined
    const base = env.kinds.includes('baseline') ? sum(`${proto}/baseline`) : undefined
    const label = `${proto.toUpperCase()} (${d.generator}${proto === 'https' ? ', CONNECT + interception' : ', absolute-form'})`
    const vsSquid = (x: Summary): string => q === undefined ? '' : ` ${ratio(x.rps, q.rps)} | ${ratio(x.p99, q.p99)} |`
    out.push(`| ${label} | direct | ${f0(d.rps)} | ${f2(d.p50)} | ${f2(d.p99)} | – | – | – | 1.00× | – |${q === undefined ? '' : ' – | – |'} ${d.errors} |`)
    out.push(`| ${label} | bare (undici dispatch) | ${f0(b.rps)} | ${f2(b.p50)} | ${f2(b.p99)} | ${mb(b.rss)} | ${f0(b.cpu)} | 1.00× | ${ratio(b.rps, d.rps)} | 1.00× |${vsSquid(b)} ${b.errors} |`)
    if (q !== undefined) out.push(`| ${label} | squid ${proto === 'https' ? 'ssl-bump' : 'request_header_add'} | ${f0(q.rps)} | ${f2(q.p50)} | ${f2(q.p99)} | ${mb(q.rss)} | ${f0(q.cpu)} | ${ratio(q.rps, b.rps)} | ${ratio(q.rps, d.rps)} | ${ratio(q.p99, b.p99)} | 1.00× | 1.00× | ${q.errors} |`)
    if (base !== undefined) out.push(`| ${label} | baseline | ${f0(base.rps)} | ${f2(base.p50)} | ${f2(base.p99)} | ${mb(base.rss)} | ${f0(base.cpu)} | ${ratio(base.rps, b.rps)} | ${ratio(base.rps, d.rps)} | ${ratio(base.p99, b.p99)} |${vsSquid(base)} ${base.errors} |`)
    out.push(`| ${label} | **sidekey** | **${f0(s.rps)}** | ${f2(s.p50)} | ${f2(s.p99)} | ${mb(s.rss)} | ${f0(s.cpu)} | **${ratio(s.rps, b.rps)}** | ${ratio(s.rps, d.rps)} | ${ratio(s.p99, b.p99)} |${vsSquid(s)} ${s.errors} |`)
    const squidRatios = q === undefined ? '' : `, sidekey/squid ${ratio(s.rps, q.rps)} (target ≥ ${proto === 'https' ? '1.20' : '1.00'}×), p99 sidekey/squid ${ratio(s.p99, q.p99)} (target ≤ 2.00×)`
    const baseRatios = base === undefined ? '' : `, sidekey/baseline ${ratio(s.rps, base.rps)}, CPU per request sidekey/baseline ${ratio(s.cpu, base.cpu)}, p99 sidekey/baseline ${ratio(s.p99, base.p99)}`
    ratios.push(`${proto.toUpperCase()}: sidekey/bare ${ratio(s.rps, b.rps)} (target ≥ ${proto === 'https' ? '0.95' : '0.90'}×), sidekey/direct ${ratio(s.rps, d.rps)}, p99 sidekey/bare ${ratio(s.p99, b.p99)}, CPU per request sidekey/bare ${ratio(s.cpu, b.cpu)}${squidRatios}${baseRatios}`)
    // The machine's speed moves between rounds more than between proxies in one round: the median of each round's
    // own ratio cancels most of that, where a ratio of medians mixes fast and slow rounds.
    const mine = runs.get(`${proto}/sidekey`)!
    const perRound = env.kinds.filter((k) => k !== 'sidekey').map((k) => {
      const theirs = runs.get(`${proto}/${k}`)!
      const m = (key: 'rps' | 'cpuPerReq' | 'p99ms'): string => `${median(mine.map((x, i) => x[key] / theirs[i]![key])).toFixed(2)}×`
      const cpus = `sidekey ${f0(median(mine.map((x) => x.cpuPerReq)))} µs vs ${k} ${f0(median(theirs.map((x) => x.cpuPerReq)))} µs`
      return `×${k} req/s ${m('rps')}, CPU per request ${m('cpuPerReq')} (${cpus}), p99 ${m('p99ms')}`
    })
    roundRatios.push(`${proto.toUpperCase()}: sidekey ${perRound.join('; ')}`)
  }
  out.push('', '**Ratios** — ' + ratios.join('; '), '')
  out.push(`**Median of the per-round ratios** (each round's cells ran back to back) — ${roundRatios.join(' — ')}`, '')
}

/** How long from exec to serving, and the RSS at rest after it: what every pod of a fleet pays. */
async function startTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  // sidekey twice: with Node's default heap, and with the image's NODE_OPTIONS (Dockerfile).
  const rows: Array<{ name: string, start: (settleMs: number) => Promise<Started> }> = env.kinds.flatMap((kind) => kind === 'sidekey'
    ? [{ name: 'sidekey', start: (ms: number) => sidekeyCliStart(env, ms, '') }, { name: `sidekey, ${IMAGE_NODE_OPTIONS}`, start: (ms: number) => sidekeyCliStart(env, ms, IMAGE_NODE_OPTIONS) }]
    : kind === 'baseline'
      ? [{ name: 'baseline', start: (ms: number) => sidekeyCliStart(env, ms, '', baselineCli) }]
      : kind === 'bare' ? [{ name: 'bare', start: (ms: number) => bareStart(env, ms) }] : [{ name: 'squid', start: (ms: number) => squidStart(env, ms) }])
  const seen = new Map<string, Started[]>()
  // Alternated, so that the machine's drift falls on every proxy alike; the last start of each also waits to settle.
  for (let i = 0; i < o.starts; i++) {
    for (const row of rows) {
      const r = await row.start(i === o.starts - 1 ? o.settleMs : 0)
      seen.set(row.name, [...seen.get(row.name) ?? [], r])
      progress(`  start ${row.name} ${i + 1}: ready in ${f0(r.readyMs)} ms, RSS at rest ${mb(r.rss)} MB${r.settled === undefined ? '' : `, ${mb(r.settled)} MB after ${o.settleMs / 1000} s`}`)
    }
  }
  out.push(`### Start to ready and RSS at rest (median of ${o.starts} starts on an existing CA, alternated${o.pin ? `, pinned to core ${PROXY_CPU}` : ''})`, '')
  out.push('sidekey: `node dist/cli.js run` from exec to `/readyz` 200 (credentials fetched); bare: from fork to listening; squid: from exec to its port accepting' + (env.kinds.includes('baseline') ? '; baseline: the same as sidekey, for the --baseline build' : '') + '. ' +
    `RSS 1 s after ready, and ${o.settleMs / 1000} s after ready on the last start (V8 returns the start's garbage after some idle seconds).`, '')
  out.push(`| proxy | start to ready ms | slowest ms | RSS 1 s after ready MB | RSS ${o.settleMs / 1000} s after ready MB |`, '|---|--:|--:|--:|--:|')
  for (const row of rows) {
    const r = seen.get(row.name)!
    out.push(`| ${row.name} | ${f0(median(r.map((x) => x.readyMs)))} | ${f0(Math.max(...r.map((x) => x.readyMs)))} | ${(median(r.map((x) => x.rss)) / 1048576).toFixed(1)} | ${(r.at(-1)!.settled! / 1048576).toFixed(1)} |`)
  }
  out.push('')
}

/** The V8 setting the image sets (Dockerfile NODE_OPTIONS), measured beside Node's default. */
const IMAGE_NODE_OPTIONS = '--max-semi-space-size=4'

interface Started { readyMs: number, rss: number, settled?: number }

/** RSS "at rest": a second after ready (a tenth of that in the smoke run, which only proves the section runs). */
function settle (env: Env): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, env.o.durationMs < 1000 ? 100 : 1000))
}

/** RSS at rest, then (settleMs > 0) again that long after ready. */
async function restingRss (env: Env, settleMs: number, read: () => Promise<number>): Promise<Pick<Started, 'rss' | 'settled'>> {
  const t0 = performance.now()
  await settle(env)
  const rss = await read()
  if (settleMs <= 0) return { rss }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, settleMs - (performance.now() - t0))))
  return { rss, settled: await read() }
}

async function sidekeyCliStart (env: Env, settleMs: number, nodeOptions: string, cli = DIST_CLI): Promise<Started> {
  const file = join(env.dir, 'start.yaml')
  writeFileSync(file, sidekeyYaml({ kind: 'sidekey', ...env.start }))
  const args = [cli, 'run', '--config', file, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']
  const t0 = performance.now()
  const child = spawn(env.o.pin ? 'taskset' : process.execPath, env.o.pin ? ['-c', PROXY_CPU, process.execPath, ...args] : args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: nodeOptions } })
  try {
    const { admin } = await listeningLine(child, 20_000)
    const deadline = performance.now() + 20_000
    for (;;) {
      const res = await request(`http://${admin}/readyz`).catch(() => undefined)
      await res?.body.dump()
      if (res?.statusCode === 200) break
      if (performance.now() > deadline) throw new Error('sidekey not ready within 20 s')
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    const readyMs = performance.now() - t0
    return { readyMs, ...await restingRss(env, settleMs, async () => processTreeRss(child.pid!)) }
  } finally {
    await stopChild(child, () => child.kill('SIGTERM'))
  }
}

async function bareStart (env: Env, settleMs: number): Promise<Started> {
  const t0 = performance.now()
  const p = await startProxy('bare', env.start, undefined, env.o.pin)
  const readyMs = performance.now() - t0
  const rss = await restingRss(env, settleMs, () => p.rss())
  await p.stop()
  return { readyMs, ...rss }
}

let squidStarts = 0

async function squidStart (env: Env, settleMs: number): Promise<Started> {
  const t0 = performance.now()
  const sq = await startSquid({ dir: join(env.dir, `squid-start-${squidStarts++}`), caDir: join(env.dir, 'ca'), upstreamCaFile: env.start.upstreamCaFile, hosts: [HTTP_HOST, HTTPS_HOST], ...(env.o.pin ? { cpus: PROXY_CPU } : {}) })
  const readyMs = performance.now() - t0
  const rss = await restingRss(env, settleMs, async () => processTreeRss(sq.pid))
  await sq.stop()
  return { readyMs, ...rss }
}

/**
 * What the audit hash chain costs: sidekey as shipped against a second sidekey child whose logger does not seal
 * (createLogger chain: false), alternating A/B, B/A in one run; and the seal alone on a typical audit line in this
 * process, which does not move with the machine's load.
 */
async function chainTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  // Both sides from the sources in a forked child, so that the logger is the only difference.
  const chained = await startProxy('sidekey', { ...env.start, dir: join(env.dir, 'chain-on') }, undefined, o.pin, [], true)
  const unchained = await startProxy('sidekey', { ...env.start, chain: false }, undefined, o.pin)
  const variants = { chained: { ...env, proxies: { ...env.proxies, sidekey: chained } }, unchained: { ...env, proxies: { ...env.proxies, sidekey: unchained } } }
  const cells = new Map<string, Cell[]>()
  try {
    const protos: Proto[] = o.only === undefined ? ['http', 'https'] : [o.only]
    for (const proto of protos) for (const v of ['chained', 'unchained'] as const) await cell(variants[v], proto, 'sidekey', o.connections, o.warmupMs)
    for (let r = 0; r < o.reps; r++) {
      for (const proto of protos) {
        for (const v of r % 2 === 0 ? ['chained', 'unchained'] as const : ['unchained', 'chained'] as const) {
          const res = await cell(variants[v], proto, 'sidekey', o.connections, o.durationMs)
          progress(`  chain ${proto} ${v} round ${r + 1}: ${f0(res.rps)} req/s, ${f0(res.cpuPerReq)} µs CPU/req`)
          cells.set(`${proto}/${v}`, [...(cells.get(`${proto}/${v}`) ?? []), res])
        }
      }
    }
    out.push(`### The audit hash chain: sidekey with and without it, median of ${o.reps} × ${o.durationMs / 1000} s per cell`, '')
    out.push('| load | sidekey | req/s | p99 ms | proxy CPU µs/req | CPU per request vs unchained |')
    out.push('|---|---|--:|--:|--:|--:|')
    for (const proto of protos) {
      const on = cells.get(`${proto}/chained`)!
      const off = cells.get(`${proto}/unchained`)!
      const cpuOn = median(on.map((c) => c.cpuPerReq))
      const cpuOff = median(off.map((c) => c.cpuPerReq))
      out.push(`| ${proto.toUpperCase()} | unchained | ${f0(median(off.map((c) => c.rps)))} | ${f2(median(off.map((c) => c.p99ms)))} | ${f0(cpuOff)} | – |`)
      out.push(`| ${proto.toUpperCase()} | **chained** (as shipped) | ${f0(median(on.map((c) => c.rps)))} | ${f2(median(on.map((c) => c.p99ms)))} | ${f0(cpuOn)} | **${cpuOff === 0 ? '–' : `${((cpuOn / cpuOff - 1) * 100).toFixed(1)} %`}** (target ≤ 5 %) |`)
    }
  } finally {
    await unchained.stop()
    await chained.stop()
  }
  const seal = sealCost(o.mintCached * 10)
  out.push('', `The seal alone (pino streamWrite hook: one SHA-256 and three string joins on a ${seal.bytes}-byte credential.used line), mean CPU time of ${f0(seal.n)} in this process: ` +
    `**${seal.us.toFixed(2)} µs per line**; a request writes one line, and a signed checkpoint (Ed25519) every 1,000 lines adds ${seal.signUs.toFixed(0)} µs per 1,000 requests.`, '')
}

function sealCost (n: number): { n: number, bytes: number, us: number, signUs: number } {
  const line = JSON.stringify({ level: 30, time: new Date().toISOString(), instance_id: 'bench', event: 'credential.used', tool: 'api', credential_id: '0f9d2c1e-5b3a-4e7f-9a8b-1c2d3e4f5a6b', method: 'GET', host: `${HTTPS_HOST}:443`, path: '/x', status: 200, duration_ms: 1, client: '127.0.0.1:54321', placeholder: 'stripped', request_id: '9c1f0e2d3b4a5968', overhead_ms: 0.2, bytes_out: 1024 }) + '\n'
  const chain = new AuditChain()
  let keep = 0
  for (let i = 0; i < 10_000; i++) keep += chain.seal(line).length
  // CPU time, not wall time: on a shared machine the process may be descheduled mid-loop.
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) keep += chain.seal(line).length
  const c1 = process.cpuUsage(c0)
  const us = (c1.user + c1.system) / n
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const key = { privateKey, publicJwk: publicJwk(publicKey) }
  const s0 = process.cpuUsage()
  for (let i = 0; i < 100; i++) keep += signCheckpoint(key, { iss: 'bench', run_id: chain.runId, seq: i, chain: chain.last, final: false, iat: 0 }).length
  const s1 = process.cpuUsage(s0)
  const signUs = (s1.user + s1.system) / 100
  if (keep === 0) progress('')
  return { n, bytes: line.length, us, signUs }
}

async function scaleTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  const rows: string[] = []
  for (const proto of ['http', 'https'] as Proto[]) {
    for (const t of env.kinds) {
      const rps: number[] = []
      for (const c of o.scaling) {
        const res = await cell(env, proto, t, c, o.durationMs)
        progress(`  scale ${proto} ${t} c=${c}: ${f0(res.rps)} req/s`)
        rps.push(res.rps)
      }
      rows.push(`| ${proto.toUpperCase()} | ${t} | ${rps.map(f0).join(' | ')} | ${(Math.min(...rps) / Math.max(...rps)).toFixed(2)} |`)
    }
  }
  out.push(`### Throughput by connection count (req/s, 1 × ${o.durationMs / 1000} s per cell)`, '')
  out.push(`| load | proxy | ${o.scaling.map((c) => `${c} conns`).join(' | ')} | min/max |`)
  out.push(`|---|---|${o.scaling.map(() => '--:|').join('')}--:|`)
  out.push(...rows, '')
}

async function rateTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  out.push(`### Added latency at a fixed ${o.rate} req/s (open loop, ${o.rateDurationMs / 1000} s, undici generator; latency from the scheduled start)`, '')
  out.push('| load | proxy | p50 ms | p99 ms | added p50 ms | added p99 ms |')
  out.push('|---|---|--:|--:|--:|--:|')
  for (const proto of ['http', 'https'] as Proto[]) {
    const res = new Map<Target, LoadResult>()
    for (const t of ['direct', ...env.kinds] as Target[]) {
      res.set(t, await cell(env, proto, t, 64, o.rateDurationMs, o.rate))
      progress(`  rate ${proto} ${t}: p99 ${f2(res.get(t)!.p99ms)} ms`)
    }
    const d = res.get('direct')!
    for (const t of ['direct', ...env.kinds] as Target[]) {
      const r = res.get(t)!
      out.push(`| ${proto.toUpperCase()} | ${t} | ${f2(r.p50ms)} | ${f2(r.p99ms)} | ${t === 'direct' ? '–' : f2(r.p50ms - d.p50ms)} | ${t === 'direct' ? '–' : f2(r.p99ms - d.p99ms)} |`)
    }
  }
  out.push('')
}

/** Opens CONNECT + TLS + one request on one tunnel and leaves it open (idle, keep-alive). */
async function idleTunnel (port: number, authority: string, caPem: string): Promise<tls.TLSSocket> {
  const raw = net.connect({ host: '127.0.0.1', port })
  raw.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    let head = ''
    const onData = (c: Buffer): void => {
      head += c.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      raw.off('data', onData)
      if (head.startsWith('HTTP/1.1 200')) resolve()
      else reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`))
    }
    raw.on('data', onData)
    raw.once('error', reject)
    raw.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
  })
  const s = tls.connect({ socket: raw, ca: caPem, servername: HTTPS_HOST, ALPNProtocols: ['http/1.1'] })
  s.on('error', () => {})
  await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject) })
  await new Promise<void>((resolve, reject) => {
    let text = ''
    const onData = (c: Buffer): void => {
      text += c.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (end >= 0 && text.length >= end + 4 + 1024) { s.off('data', onData); resolve() }
    }
    s.on('data', onData)
    s.once('close', () => reject(new Error('tunnel closed')))
    s.write(`GET /x HTTP/1.1\r\nHost: ${authority}\r\nAuthorization: Bearer sidekey\r\n\r\n`)
  })
  return s
}

/** RSS of a proxy before and with `n` idle intercepted tunnels open (opened 32 at a time); closes them after. */
async function rssWithTunnels (env: Env, p: ProxyChild, n: number): Promise<{ before: number, after: number, tunnels: number }> {
  const authority = `${HTTPS_HOST}:${env.up.https}`
  const before = await p.rss()
  const sockets: tls.TLSSocket[] = []
  let next = 0
  const opener = async (): Promise<void> => {
    while (next < n) {
      next++
      sockets.push(await idleTunnel(p.port, authority, p.caPem))
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(32, n) }, opener))
    return { before, after: await p.rss(), tunnels: sockets.length }
  } finally {
    for (const s of sockets) s.destroy()
  }
}

async function idleTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  out.push(`### RSS with ${o.idleTunnels} idle intercepted tunnels (fresh proxy process restarted on its existing CA, as a sidecar restarts; CONNECT + TLS + one request each, then idle)`, '')
  out.push('| proxy | RSS before MB | RSS with tunnels MB | per tunnel KB |')
  out.push('|---|--:|--:|--:|')
  for (const kind of env.kinds.filter((k) => k !== 'squid')) {
    const start = { ...env.start, dir: join(env.dir, `idle-${kind}`) }
    // The first start creates the CA (which loads @peculiar/x509); a sidecar's later starts only load it.
    await (await startProxy(kind, start, undefined, o.pin)).stop()
    const p = await startProxy(kind, start, undefined, o.pin)
    try {
      const { before, after, tunnels } = await rssWithTunnels(env, p, o.idleTunnels)
      progress(`  idle ${p.kind}: ${mb(after)} MB with ${tunnels} tunnels`)
      out.push(`| ${p.kind} | ${mb(before)} | **${mb(after)}** | ${((after - before) / 1024 / tunnels).toFixed(1)} |`)
    } finally {
      await p.stop()
    }
  }
  out.push('')
}

/** V8 heap settings a sidecar might ship with, each against the default in the same run. */
const HEAP_VARIANTS: Array<[string, string[]]> = [['default', []], ['--max-semi-space-size=1', ['--max-semi-space-size=1']], ['--max-semi-space-size=2', ['--max-semi-space-size=2']], ['--max-semi-space-size=4', ['--max-semi-space-size=4']]]

/**
 * What a smaller young generation saves and costs: RSS at rest and with idle tunnels, and one-core throughput and
 * CPU per request, sidekey under each setting, the variants' cells alternated A/B/C/D, D/C/B/A in one run.
 */
async function heapTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  const variants: Array<{ name: string, p: ProxyChild, rest: number, cells: Map<Proto, Cell[]> }> = []
  try {
    for (const [name, args] of HEAP_VARIANTS) {
      const start = { ...env.start, dir: join(env.dir, `heap-${variants.length}`) }
      await (await startProxy('sidekey', start, undefined, o.pin, args)).stop()
      const p = await startProxy('sidekey', start, undefined, o.pin, args)
      await settle(env)
      variants.push({ name, p, rest: await p.rss(), cells: new Map([['http', []], ['https', []]]) })
    }
    const on = (p: ProxyChild, proto: Proto, ms: number): Promise<Cell> => cell({ ...env, proxies: { ...env.proxies, sidekey: p } }, proto, 'sidekey', o.connections, ms)
    for (const v of variants) for (const proto of ['http', 'https'] as Proto[]) await on(v.p, proto, o.warmupMs)
    for (let r = 0; r < o.reps; r++) {
      for (const proto of ['http', 'https'] as Proto[]) {
        for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
          const res = await on(v.p, proto, o.durationMs)
          progress(`  heap ${v.name} ${proto} round ${r + 1}: ${f0(res.rps)} req/s, p99 ${f2(res.p99ms)} ms, ${f0(res.cpuPerReq)} µs CPU/req`)
          v.cells.get(proto)!.push(res)
        }
      }
    }
    out.push(`### V8 young generation: sidekey under each setting (median of ${o.reps} × ${o.durationMs / 1000} s per cell, ${o.connections} connections${o.pin ? ', pinned' : ''}; RSS at rest a second after start, then with ${o.idleTunnels} idle tunnels after the load)`, '')
    out.push('| setting | RSS at rest MB | RSS with tunnels MB | HTTP req/s | HTTP p99 ms | HTTP CPU µs/req | HTTPS req/s | HTTPS p99 ms | HTTPS CPU µs/req |')
    out.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|')
    for (const v of variants) {
      const { after } = await rssWithTunnels(env, v.p, o.idleTunnels)
      const h = v.cells.get('http')!
      const s = v.cells.get('https')!
      const m = (xs: Cell[], k: 'rps' | 'p99ms' | 'cpuPerReq'): number => median(xs.map((x) => x[k]))
      out.push(`| ${v.name} | ${mb(v.rest)} | ${mb(after)} | ${f0(m(h, 'rps'))} | ${f2(m(h, 'p99ms'))} | ${f0(m(h, 'cpuPerReq'))} | ${f0(m(s, 'rps'))} | ${f2(m(s, 'p99ms'))} | ${f0(m(s, 'cpuPerReq'))} |`)
    }
    out.push('')
  } finally {
    for (const v of variants) await v.p.stop()
  }
}

/**
 * `per_call: true`: a JWT signed on the request path for every call, against the pooled token of the main table,
 * on plain HTTP (absolute-form) where the proxy's own work is smallest and signing weighs the most.
 */
async function perCallTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  const variants: Array<['pooled' | 'ES256' | 'EdDSA', ProxyChild]> = [['pooled', env.proxies.sidekey]]
  for (const alg of ['ES256', 'EdDSA'] as const) {
    const child = await startProxy('sidekey', { ...env.start, dir: join(env.dir, `percall-${alg}`), perCall: alg }, undefined, o.pin)
    variants.push([alg, child])
  }
  try {
    const runs = new Map<string, Cell[]>(variants.map(([name]) => [name, []]))
    // The same proxy under the name 'sidekey', so cell() measures it like the main table's.
    const on = (child: ProxyChild, ms: number): Promise<Cell> => cell({ ...env, proxies: { ...env.proxies, sidekey: child } }, 'http', 'sidekey', o.connections, ms)
    for (const [, child] of variants) await on(child, o.warmupMs)
    for (let r = 0; r < o.reps; r++) {
      for (const [name, child] of r % 2 === 0 ? variants : [...variants].reverse()) {
        const res = await on(child, o.durationMs)
        progress(`  per-call ${name} round ${r + 1}: ${f0(res.rps)} req/s, ${f0(res.cpuPerReq)} µs CPU/req`)
        runs.get(name)!.push(res)
      }
    }
    const base = runs.get('pooled')!
    const baseRps = median(base.map((x) => x.rps))
    const baseCpu = median(base.map((x) => x.cpuPerReq))
    out.push(`### Per-call tokens (\`per_call: true\`): HTTP absolute-form, ${o.connections} connections, median of ${o.reps} × ${o.durationMs / 1000} s per cell`, '')
    out.push('| token | req/s | p99 ms | proxy CPU µs/req | added CPU µs/req | req/s ×pooled |')
    out.push('|---|--:|--:|--:|--:|--:|')
    for (const [name] of variants) {
      const xs = runs.get(name)!
      const rps = median(xs.map((x) => x.rps))
      const cpu = median(xs.map((x) => x.cpuPerReq))
      const label = name === 'pooled' ? 'pooled (one ES256 token per refresh)' : `per call, ${name}`
      out.push(`| ${label} | ${f0(rps)} | ${f2(median(xs.map((x) => x.p99ms)))} | ${f0(cpu)} | ${name === 'pooled' ? '–' : f0(cpu - baseCpu)} | ${ratio(rps, baseRps)} |`)
    }
    out.push('', `Signing alone, in the bench process (\`mint\`, mean CPU of ${f0(o.mintCached)} tokens, the claims of the table's calls): ` +
      (await mintCost(o.mintCached)).map(([alg, us]) => `${alg} ${us.toFixed(1)} µs`).join(', ') + '.', '')
  } finally {
    for (const [name, child] of variants) if (name !== 'pooled') await child.stop()
  }
}

/** CPU µs per per-call token, by algorithm: what `per_call` adds to each request, without the load's noise. */
async function mintCost (n: number): Promise<Array<[string, number]>> {
  const rows: Array<[string, number]> = []
  for (const alg of ['ES256', 'EdDSA'] as const) {
    const issuer = createLocalJwtIssuer('bench', localJwtIssuer.parse({ type: 'local_jwt', alg }), { clock: systemClock, dispatcher: new Agent() })
    const call = { tool: 'plain', scopes: ['read'], audience: undefined, instanceId: 'bench', ttlMs: 60_000, method: 'GET', url: `http://${HTTP_HOST}:8080/x`, task: 'bench-task/step:1' }
    await issuer.fetch({ ...call, signal: new AbortController().signal })
    for (let i = 0; i < 200; i++) issuer.mint!(call)
    const c0 = process.cpuUsage()
    for (let i = 0; i < n; i++) issuer.mint!(call)
    const c = process.cpuUsage(c0)
    rows.push([alg, (c.user + c.system) / n])
    issuer.close?.()
  }
  return rows
}

async function profile (env: Env, out: string[]): Promise<void> {
  const { o } = env
  // The undici generator for every cell, so that HTTP and HTTPS, open and closed loop are timed alike.
  const undiciOnly = { ...env, o: { ...o, wrk: false } }
  const created = new Set<string>()
  await profileTable({
    kinds: env.kinds,
    fresh: env.kinds.filter((k) => k === 'sidekey' || k === 'baseline'),
    cellMs: o.profileCellMs,
    samples: o.samples,
    settleMs: o.idleMs / 2,
    idleMs: o.idleMs,
    upstream: env.up,
    cell: async (c) => await cell(undiciOnly, c.proto, c.target as Target, c.connections, c.durationMs, c.rate, c.path),
    start: async (kind) => {
      const start = { ...env.start, dir: join(env.dir, `first-contact-${kind}`) }
      // The first start creates the CA; the samples restart on it, as a sidecar restarts.
      if (!created.has(kind)) { created.add(kind); await (await startProxy(kind as 'sidekey' | 'baseline', start, undefined, o.pin)).stop() }
      return await startProxy(kind as 'sidekey' | 'baseline', start, undefined, o.pin)
    },
    progress,
  }, out)
}

async function mintTable (env: Env, out: string[]): Promise<void> {
  const { o } = env
  const ca = await loadOrCreateCa({ dir: join(env.dir, 'mint-ca'), validityMs: 30 * 86_400_000 })
  const leaves = new LeafCache({ ca, validityMs: 86_400_000, max: o.mintCold + 10 })
  await leaves.secureContext('warm.mint.bench.test')
  const cold: number[] = []
  for (let i = 0; i < o.mintCold; i++) {
    const t0 = performance.now()
    await leaves.secureContext(`h${i}.mint.bench.test`)
    cold.push(performance.now() - t0)
  }
  const t0 = performance.now()
  for (let i = 0; i < o.mintCached; i++) await leaves.secureContext(`h${i % o.mintCold}.mint.bench.test`)
  const cached = (performance.now() - t0) / o.mintCached
  out.push('### Leaf certificates (LeafCache.secureContext, in the bench process)', '')
  out.push('| | time |', '|---|--:|')
  out.push(`| cold: key + certificate + secure context, median of ${o.mintCold} | ${f2(median(cold))} ms |`)
  out.push(`| cold: slowest of ${o.mintCold} | ${f2(Math.max(...cold))} ms |`)
  out.push(`| cached, mean of ${f0(o.mintCached)} | ${(cached * 1000).toFixed(1)} µs |`, '')
}

async function countLines (file: string): Promise<number> {
  let n = 0
  for await (const chunk of createReadStream(file)) for (const b of chunk as Buffer) if (b === 10) n++
  return n
}

function machine (): string {
  const c = cpus()
  const os = spawnSync('uname', ['-sr'], { encoding: 'utf8' }).stdout?.trim() ?? process.platform
  return `${c[0]?.model ?? 'cpu'} × ${c.length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM (${(freemem() / 2 ** 30).toFixed(0)} free), ${os}, Node ${process.version}`
}

async function main (): Promise<void> {
  const o = options(process.argv.slice(2))
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-bench-'))
  const children: ChildProcess[] = []
  const out: string[] = []
  let compiled: string | undefined
  try {
    progress(`bench in ${dir}; HTTP generator: ${o.wrk ? 'wrk' : 'undici'}; ${o.pin ? `proxies pinned to core ${PROXY_CPU}` : 'no pinning'}; squid: ${o.squid ? 'yes' : 'no (apt-get install squid-openssl)'}`)
    // The bench process, and so the upstream and wrk it spawns, stay on the load core.
    if (o.pin) pin(process.pid, LOAD_CPU)
    compiled = compileForChildren(join(import.meta.dirname, '..', '..'))
    childDir = join(compiled, 'test', 'bench')
    const up = await startUpstreams()
    children.push(up.child)
    const start = { dir, httpPort: up.http, httpsPort: up.https, upstreamCaFile: up.caFile, upstreamCaPem: up.caPem }
    const sidekey = await startProxy('sidekey', start, o.profileTarget === 'sidekey' ? o.profile : undefined, o.pin)
    children.push(sidekey.child)
    const bare = await startProxy('bare', start, o.profileTarget === 'bare' ? o.profile : undefined, o.pin)
    children.push(bare.child)
    // squid signs its leaves with sidekey's issuing CA, so the load generators trust all three alike.
    const squid = o.squid ? await squidChild({ dir, caDir: join(dir, 'ca'), upstreamCaFile: up.caFile, hosts: [HTTP_HOST, HTTPS_HOST], ...(o.pin ? { cpus: PROXY_CPU } : {}) }, sidekey.caPem) : undefined
    if (squid !== undefined) children.push(squid.child)
    if (o.baseline !== undefined) baselineCli = resolve(o.baseline)
    const baseline = o.baseline === undefined ? undefined : await startProxy('baseline', { ...start, dir: join(dir, 'baseline') }, undefined, o.pin)
    if (baseline !== undefined) children.push(baseline.child)
    const kinds: ProxyKind[] = ['bare', ...(squid === undefined ? [] : ['squid'] as const), ...(baseline === undefined ? [] : ['baseline'] as const), 'sidekey']
    const env: Env = { o, dir, up, proxies: { sidekey, bare, ...(squid === undefined ? {} : { squid }), ...(baseline === undefined ? {} : { baseline }) }, kinds, start, served: 0 }
    out.push(`## sidekey bench, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`, '')
    out.push(`Machine: ${machine()}. Everything on 127.0.0.1: upstream (HTTP + HTTPS, 1 KiB body), each proxy and the load generator are separate processes sharing the cores. ` +
      'sidekey runs as shipped (audit line on every request through pino\'s async destination to a file, metrics on); ' +
      `"bare" is test/bench/bare.ts (node:http in, undici dispatch out, one injected header: the floor). HTTP load: ${o.wrk ? 'wrk -t1 with a Lua script (absolute-form)' : 'built-in undici generator'}; HTTPS load: undici ProxyAgent (CONNECT, TLS to the proxy's leaf).`, '')
    if (o.sections.has('start')) await startTable(env, out)
    if (o.sections.has('main')) await mainTable(env, out)
    if (o.sections.has('chain')) await chainTable(env, out)
    if (o.sections.has('scale')) await scaleTable(env, out)
    if (o.sections.has('rate')) await rateTable(env, out)
    if (o.sections.has('idle')) await idleTable(env, out)
    if (o.sections.has('heap')) await heapTable(env, out)
    if (o.sections.has('mint')) await mintTable(env, out)
    if (o.sections.has('sni')) await sniTable({ dir: join(dir, 'sni'), cli: DIST_CLI, count: o.sniNames, timeLimitMs: 120_000, pinCpu: o.pin ? PROXY_CPU : undefined }, out)
    if (o.sections.has('percall')) await perCallTable(env, out)
    if (o.sections.has('mcp')) {
      const mcpStart = (mcpPort: number): Promise<ProxyChild> => startProxy('sidekey', { ...start, dir: join(dir, 'mcp'), mcpPort }, undefined, o.pin)
      await mcpTable({ reps: o.reps, cellMs: o.durationMs / 4, warmupMs: o.warmupMs }, mcpStart, out)
    }
    if (o.sections.has('profile')) await profile(env, out)
    if (o.sections.has('scrub')) {
      scrubTable(out, o.durationMs / 5000)
      await scrubPerRequestTable(out, o.durationMs / 5000)
    }
    await baseline?.stop()
    await squid?.stop()
    await bare.stop()
    await sidekey.stop()
    const lines = await countLines(join(dir, 'audit.log')).catch(() => 0)
    out.push(`sidekey answered ${f0(env.served)} requests with 200 to the load generators and wrote ${f0(lines)} log lines (one audit line per request, plus start/stop).`)
    if (!o.squid) out.push('', 'squid is not in this run: install Debian/Ubuntu `squid-openssl` for its column (or it was left out with --no-squid).')
    process.stdout.write(out.join('\n') + '\n')
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill()
    rmSync(dir, { recursive: true, force: true })
    if (compiled !== undefined) rmSync(compiled, { recursive: true, force: true })
  }
}

await main()
