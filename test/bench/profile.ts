import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, Pool, ProxyAgent, type Dispatcher } from 'undici'
import type { LoadResult } from './load.js'
import { FRESH_HOST, HTTP_HOST, HTTPS_HOST, WARM_HOST, loopbackLookup } from './proxy-server.js'

/**
 * `--sections=profile`: the numbers other proxies publish, measured the same way here so they can be set side by
 * side. Added latency over direct-to-upstream (mean, p50, p99) at a fixed 1,000 req/s and with 16 closed-loop
 * connections, 0-byte and 1 KiB response bodies, HTTP and HTTPS; then the first request after a restart, to a tool
 * host whose leaf sidekey mints at ready and to a name under a wildcard tool that has no leaf yet, and again to both
 * after an idle pause.
 */

export type Proto = 'http' | 'https'

export interface ProfileCell { proto: Proto, target: string, connections: number, durationMs: number, rate?: number, path: string }

/** A proxy started fresh for the first-contact samples. */
export interface FreshProxy { port: number, caPem: string, stop (): Promise<void> }

export interface ProfileOptions {
  /** The proxies in the run ('direct' is added). */
  kinds: readonly string[]
  /** sidekey builds whose first contact is sampled: 'sidekey', and 'baseline' with --baseline. */
  fresh: readonly string[]
  cellMs: number
  samples: number
  /** Between ready and the first request, and the pause before the idle requests. */
  settleMs: number
  idleMs: number
  upstream: { http: number, https: number, caPem: string }
  /** One bounded, warmed load against a target (the bench's cell). */
  cell (c: ProfileCell): Promise<LoadResult>
  /** A new process of that build on its existing CA, listening. */
  start (kind: string): Promise<FreshProxy>
  progress (line: string): void
}

const RATE = 1000
const CONNECTIONS = 16
/** The upstream answers this path with an empty body (upstream-server.ts), any other with 1 KiB. */
const BODIES: Array<[string, string]> = [['0 B', '/0'], ['1 KiB', '/x']]
const HEADERS = { authorization: 'Bearer sidekey' }

const f2 = (n: number): string => n.toFixed(2)
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export async function profileTable (o: ProfileOptions, out: string[]): Promise<void> {
  await addedLatency(o, out)
  await firstContact(o, out)
}

async function addedLatency (o: ProfileOptions, out: string[]): Promise<void> {
  const modes: Array<{ label: string, rate?: number }> = [{ label: `${RATE.toLocaleString('en-US')} req/s`, rate: RATE }, { label: `${CONNECTIONS} conns, closed loop` }]
  const rows: string[] = []
  let round = 0
  for (const proto of ['http', 'https'] as Proto[]) {
    for (const [body, path] of BODIES) {
      for (const mode of modes) {
        // Alternated, direct in the middle, so the machine's drift does not fall on one proxy only.
        const targets = round++ % 2 === 0 ? ['direct', ...o.kinds] : [...o.kinds].reverse().concat('direct')
        const res = new Map<string, LoadResult>()
        for (const target of targets) {
          const r = await o.cell({ proto, target, connections: CONNECTIONS, durationMs: o.cellMs, path, ...(mode.rate === undefined ? {} : { rate: mode.rate }) })
          o.progress(`  profile ${proto} ${body} ${mode.label} ${target}: mean ${f2(r.meanms)} ms, p99 ${f2(r.p99ms)} ms`)
          res.set(target, r)
        }
        const d = res.get('direct')!
        for (const target of ['direct', ...o.kinds]) {
          const r = res.get(target)!
          const added = (a: number, b: number): string => target === 'direct' ? '–' : f2(a - b)
          rows.push(`| ${proto.toUpperCase()} | ${body} | ${mode.label} | ${target === 'sidekey' ? '**sidekey**' : target} | ${f2(r.meanms)} | ${f2(r.p50ms)} | ${f2(r.p99ms)} | ` +
            `${target === 'sidekey' ? `**${added(r.meanms, d.meanms)}**` : added(r.meanms, d.meanms)} | ${added(r.p50ms, d.p50ms)} | ${added(r.p99ms, d.p99ms)} | ${r.errors} |`)
        }
      }
    }
  }
  out.push(`### Latency profile: added over direct (${o.cellMs / 1000} s per cell, undici generator; ${RATE.toLocaleString('en-US')} req/s is an open loop over ${CONNECTIONS} connections, latency from each request's scheduled start)`, '')
  out.push('| load | response body | load shape | proxy | mean ms | p50 ms | p99 ms | added mean ms | added p50 ms | added p99 ms | errors |')
  out.push('|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|')
  out.push(...rows, '')
}

/** One GET on a dispatcher of its own (so a new connection, and through a proxy a new CONNECT + handshake), ms. */
async function timedFirst (dispatcher: Dispatcher, origin: string, path: string, host: string): Promise<number> {
  try {
    const t0 = performance.now()
    const r = await dispatcher.request({ origin, path, method: 'GET', headers: { host, ...HEADERS } })
    await r.body.arrayBuffer()
    const ms = performance.now() - t0
    if (r.statusCode !== 200) throw new Error(`first request to ${host}: ${r.statusCode}`)
    return ms
  } finally {
    await dispatcher.close()
  }
}

type Contact = 'configured' | 'fresh' | 'configured, idle' | 'fresh, idle'

async function firstContact (o: ProfileOptions, out: string[]): Promise<void> {
  const { upstream } = o
  const https = (host: string): string => `https://${host}:${upstream.https}`
  const direct: number[] = []
  const seen = new Map<string, Map<Contact, number[]>>(o.fresh.map((k) => [k, new Map()]))
  for (let i = 0; i < o.samples; i++) {
    for (const kind of o.fresh) {
      const p = await o.start(kind)
      try {
        const viaProxy = (host: string): ProxyAgent => new ProxyAgent({ uri: `http://127.0.0.1:${p.port}`, connections: 1, requestTls: { ca: p.caPem, servername: host } })
        const record = (c: Contact, ms: number): void => { seen.get(kind)!.set(c, [...seen.get(kind)!.get(c) ?? [], ms]) }
        await sleep(o.settleMs)
        // A plain request and an intercepted one to a third name first: what follows is the cost of a host's first
        // contact, not of the process's first request (code loaded and compiled on first use).
        await timedFirst(new Pool(`http://127.0.0.1:${p.port}`, { connections: 1 }), `http://127.0.0.1:${p.port}`, `http://${HTTP_HOST}:${upstream.http}/x`, `${HTTP_HOST}:${upstream.http}`)
        await timedFirst(viaProxy(WARM_HOST), https(WARM_HOST), '/x', `${WARM_HOST}:${upstream.https}`)
        direct.push(await timedFirst(new Agent({ connections: 1, connect: { ca: upstream.caPem, lookup: loopbackLookup } }), https(HTTPS_HOST), '/x', `${HTTPS_HOST}:${upstream.https}`))
        const pairs: Array<[Contact, string]> = i % 2 === 0 ? [['configured', HTTPS_HOST], ['fresh', FRESH_HOST]] : [['fresh', FRESH_HOST], ['configured', HTTPS_HOST]]
        for (const [c, host] of pairs) record(c, await timedFirst(viaProxy(host), https(host), '/x', `${host}:${upstream.https}`))
        await sleep(o.idleMs)
        for (const [c, host] of pairs) record(`${c}, idle` as Contact, await timedFirst(viaProxy(host), https(host), '/x', `${host}:${upstream.https}`))
        o.progress(`  first contact ${kind} ${i + 1}: ${[...seen.get(kind)!].map(([c, xs]) => `${c} ${f2(xs.at(-1)!)} ms`).join(', ')}; direct ${f2(direct.at(-1)!)} ms`)
      } finally {
        await p.stop()
      }
    }
  }
  const d = median(direct)
  const label: Record<Contact, string> = {
    configured: `a tool host (\`${HTTPS_HOST}\`), first request after start: its leaf was minted at ready`,
    fresh: `a new name under a wildcard tool (\`${FRESH_HOST}\`), first request: no leaf yet, minted on this CONNECT`,
    'configured, idle': `the tool host again, new connection after ${o.idleMs / 1000} s idle (leaf cached)`,
    'fresh, idle': `the wildcard name again, new connection after ${o.idleMs / 1000} s idle (leaf cached)`,
  }
  out.push(`### First contact: one HTTPS request on a new connection (CONNECT + TLS to the proxy's leaf + request), median of ${o.samples} fresh processes on an existing CA, first request ${o.settleMs} ms after listening`, '')
  out.push('| proxy | request | median ms | slowest ms | added over direct ms |', '|---|---|--:|--:|--:|')
  out.push(`| direct | new TLS connection to the upstream | ${f2(d)} | ${f2(Math.max(...direct))} | – |`)
  for (const [kind, byContact] of seen) {
    for (const [c, xs] of byContact) out.push(`| ${kind} | ${label[c]} | ${f2(median(xs))} | ${f2(Math.max(...xs))} | **${f2(median(xs) - d)}** |`)
  }
  out.push('')
}
