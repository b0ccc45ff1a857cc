import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHistogram } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'

/** One bounded load run: what the client saw. */
export interface LoadResult {
  requests: number
  errors: number
  seconds: number
  rps: number
  meanms: number
  p50ms: number
  p99ms: number
  generator: 'wrk' | 'undici'
}

export interface UndiciLoad {
  dispatcher: Dispatcher
  origin: string
  /** Origin-form, or absolute-form for a proxy. */
  path: string
  headers: Record<string, string>
  connections: number
  durationMs: number
  /** Hard bound on requests, whatever the duration. */
  maxRequests: number
  /** Open loop: start this many requests per second (latency counted from the scheduled start). */
  rate?: number
}

/**
 * The built-in load generator: `connections` closed-loop workers (or an open-loop schedule at `rate`), each
 * request's body read whole. Bounded by count and time.
 */
export async function undiciLoad (o: UndiciLoad): Promise<LoadResult> {
  const hist = createHistogram()
  let started = 0
  let done = 0
  let errors = 0
  const t0 = performance.now()
  const deadline = t0 + o.durationMs
  const one = async (scheduled: number): Promise<void> => {
    try {
      const r = await o.dispatcher.request({ origin: o.origin, path: o.path, method: 'GET', headers: o.headers })
      await r.body.arrayBuffer()
      if (r.statusCode !== 200) errors++
      else hist.record(Math.max(1, Math.round((performance.now() - scheduled) * 1e6)))
    } catch {
      errors++
    }
    done++
  }
  if (o.rate === undefined) {
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline && started < o.maxRequests) {
        started++
        await one(performance.now())
      }
    }
    await Promise.all(Array.from({ length: o.connections }, worker))
  } else {
    const interval = 1000 / o.rate
    const inflight = new Set<Promise<void>>()
    let next = t0
    while (next < deadline && started < o.maxRequests) {
      const now = performance.now()
      if (now < next) { await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - now))); continue }
      started++
      const p = one(next).finally(() => inflight.delete(p))
      inflight.add(p)
      next += interval
    }
    await Promise.all(inflight)
  }
  const seconds = (performance.now() - t0) / 1000
  return { requests: done - errors, errors, seconds, rps: (done - errors) / seconds, meanms: hist.count === 0 ? 0 : hist.mean / 1e6, p50ms: hist.count === 0 ? 0 : hist.percentile(50) / 1e6, p99ms: hist.count === 0 ? 0 : hist.percentile(99) / 1e6, generator: 'undici' }
}

export function hasWrk (): boolean {
  const r = spawnSync('wrk', ['--version'], { stdio: 'ignore' })
  return r.error === undefined
}

export interface WrkLoad {
  /** `http://127.0.0.1:PORT` to connect to. */
  connectTo: string
  path: string
  headers: Record<string, string>
  connections: number
  durationMs: number
  dir: string
}

/** wrk (one thread) with a Lua script that sets the request line, headers and prints a JSON summary. */
export async function wrkLoad (o: WrkLoad): Promise<LoadResult> {
  const script = join(o.dir, `wrk-${process.pid}.lua`)
  const headerLines = Object.entries(o.headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join('\n')
  writeFileSync(script, `wrk.method = "GET"
wrk.path = ${JSON.stringify(o.path)}
${headerLines}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCHJSON {\\"requests\\":%d,\\"us\\":%d,\\"errors\\":%d,\\"mean\\":%d,\\"p50\\":%d,\\"p99\\":%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout, latency.mean, latency:percentile(50), latency:percentile(99)))
end
`)
  const seconds = Math.max(1, Math.round(o.durationMs / 1000))
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', ['-t1', `-c${o.connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', script, o.connectTo + '/'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    child.stdout.on('data', (c: Buffer) => { text += c.toString() })
    const kill = setTimeout(() => child.kill('SIGKILL'), (seconds + 15) * 1000)
    child.once('error', reject)
    child.once('close', () => { clearTimeout(kill); resolve(text) })
  })
  const line = out.split('\n').find((l) => l.startsWith('BENCHJSON '))
  if (line === undefined) throw new Error(`wrk printed no summary: ${out.slice(0, 500)}`)
  const j = JSON.parse(line.slice(10)) as { requests: number, us: number, errors: number, mean: number, p50: number, p99: number }
  const ok = Math.max(0, j.requests - j.errors)
  return { requests: ok, errors: j.errors, seconds: j.us / 1e6, rps: ok / (j.us / 1e6), meanms: j.mean / 1000, p50ms: j.p50 / 1000, p99ms: j.p99 / 1000, generator: 'wrk' }
}
