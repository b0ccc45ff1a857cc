import type { Test } from 'tap'
import * as net from 'node:net'
import { spawn } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { listeningLine } from '../helpers/cli.js'

const MiB = 1024 * 1024

export interface Sink { port: number, received: () => number, sent: () => number, server: Server }

/** A plain upstream that discards request bodies (counting them) and serves `/download/N` as N MiB. */
export async function sinkUpstream (t: Test): Promise<Sink> {
  let received = 0
  let sent = 0
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => { received += c.length })
    req.on('end', () => {
      const m = /^\/download\/(\d+)/.exec(req.url ?? '')
      if (m === null) { res.end(String(received)); return }
      const total = Number(m[1]) * MiB
      res.writeHead(200, { 'content-length': total })
      let left = total
      const pump = (): void => {
        while (left > 0) {
          left -= chunk.length
          sent += chunk.length
          if (!res.write(chunk)) { res.once('drain', pump); return }
        }
        res.end()
      }
      res.on('close', () => { left = 0 })
      pump()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return { port: (server.address() as net.AddressInfo).port, received: () => received, sent: () => sent, server }
}

/** Starts `sidekey run` as its own process (the built bundle, as shipped), so that its RSS is the sidecar's alone. */
export async function sidekeyProcess (t: Test, yaml: string): Promise<{ port: number, rss: () => number, caPem: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-f4-'))
  const file = join(dir, 'sidekey.yaml')
  writeFileSync(file, yaml.replaceAll('{{CA_DIR}}', join(dir, 'ca')))
  const root = join(import.meta.dirname, '..', '..')
  const child = spawn(process.execPath, [join(root, 'dist', 'cli.js'), 'run', '--config', file, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], {
    cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => { child.kill('SIGTERM') })
  const listening = await listeningLine(child, 60_000)
  const port = Number(listening.proxy.split(':').pop())
  const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
  return { port, rss, caPem: readFileSync(listening.ca, 'utf8') }
}
