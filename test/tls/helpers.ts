import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import type { Test } from 'tap'
import type { Clock, Timer } from '../../src/util/clock.js'

export const DAY = 86_400_000

/** A fresh temp directory removed at teardown. */
export async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A clock that only moves when told to (timers are not used by the TLS code). */
export class ManualClock implements Clock {
  constructor (public ms = Date.now()) {}
  now (): number { return this.ms }
  advance (ms: number): void { this.ms += ms }
  setTimeout (): Timer { throw new Error('ManualClock has no timers') }
  clearTimeout (): void {}
}

export interface Run { code: number, stdout: string, stderr: string }

/** Runs openssl; never throws on a non-zero exit, so tests can assert on failures. */
export async function openssl (args: string[]): Promise<Run> {
  return await new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') { reject(err); return }
      resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr })
    })
  })
}

/** `openssl verify` of a leaf against the trust anchor, with the intermediate(s) as untrusted chain. */
export async function opensslVerify (dir: string, caPem: string, chainPem: string, leafPem: string): Promise<Run> {
  const ca = join(dir, 'verify-ca.pem')
  const leaf = join(dir, 'verify-leaf.pem')
  const chain = join(dir, 'verify-chain.pem')
  await writeFile(ca, caPem)
  await writeFile(leaf, leafPem)
  const args = ['verify', '-CAfile', ca]
  if (chainPem !== '') {
    await writeFile(chain, chainPem)
    args.push('-untrusted', chain)
  }
  return await openssl([...args, leaf])
}

/** A TLS server on 127.0.0.1:0 that answers "ok <servername>" and closes; torn down with the test. */
export async function tlsServer (t: Test, opts: tls.TlsOptions): Promise<number> {
  const server = tls.createServer(opts, (socket) => {
    socket.end(`ok ${(socket as tls.TLSSocket & { servername?: string }).servername ?? ''}`)
  })
  // Handshake failures are the point of some tests; the client side asserts on them.
  server.on('tlsClientError', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return (server.address() as AddressInfo).port
}

/** Connects with node's verifier; resolves with what the server said or rejects with the TLS error. */
export async function tlsGet (port: number, opts: tls.ConnectionOptions): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...opts })
    let body = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => { body += d })
    socket.on('end', () => resolve(body))
    socket.on('error', reject)
  })
}
