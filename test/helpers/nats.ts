import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { systemBinary } from './system-binary.js'
import { freePort } from './free-port.js'

export const natsBinary = systemBinary('nats-server', 'nats-server')

/** A nats-server with JetStream on 127.0.0.1, its own store dir; `stop` and `start` again keep port and store. */
export interface NatsServer {
  readonly url: string
  readonly port: number
  stop (): Promise<void>
  start (): Promise<void>
}

/** `args` is read at every start: a test can restart the server with other options (another `--auth` token). */
export async function startNats (t: Test, bin: string, args: () => readonly string[] = () => []): Promise<NatsServer> {
  const port = await freePort()
  const store = mkdtempSync(join(tmpdir(), 'sidekey-nats-'))
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    const c = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store, ...args()], { stdio: ['ignore', 'ignore', 'pipe'] })
    child = c
    // nats-server logs to stderr; "Server is ready" follows the JetStream start-up.
    await new Promise<void>((resolve, reject) => {
      let text = ''
      const timer = setTimeout(() => reject(new Error(`nats-server did not start: ${text.slice(-500)}`)), 10_000)
      c.stderr!.on('data', (d: Buffer) => {
        text += d.toString()
        if (text.includes('Server is ready')) {
          clearTimeout(timer)
          resolve()
        }
      })
      c.once('exit', (code) => { clearTimeout(timer); reject(new Error(`nats-server exited ${code}: ${text.slice(-500)}`)) })
    })
    c.stderr!.resume()
  }
  const stop = async (): Promise<void> => {
    const c = child
    child = undefined
    if (c === undefined || c.exitCode !== null) return
    const exited = new Promise((resolve) => c.once('exit', resolve))
    c.kill('SIGKILL')
    await exited
  }
  await start()
  t.teardown(async () => {
    await stop()
    rmSync(store, { recursive: true, force: true })
  })
  return { url: `nats://127.0.0.1:${port}`, port, stop, start }
}

/**
 * A TCP relay in front of the broker for one sidecar: `cut()` drops its connections and refuses new ones (a
 * partition), `heal()` lets it reconnect.
 */
export interface Partition {
  readonly url: string
  cut (): void
  heal (): void
}

export async function startPartition (t: Test, target: number): Promise<Partition> {
  let open = true
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    if (!open) {
      client.destroy()
      return
    }
    const upstream = tcpConnect(target, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return {
    url: `nats://127.0.0.1:${(server.address() as { port: number }).port}`,
    cut () {
      open = false
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    heal () { open = true },
  }
}
