import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CA_ISSUER_FILE, CA_KEY_FILE } from '../../src/tls/ca.js'
import { stopChild } from './proc.js'
import { freePort } from '../helpers/free-port.js'

/**
 * squid (Debian `squid-openssl`) as the bench's reference proxy: `request_header_add` swaps the agent's
 * placeholder Authorization for a fixed token on plain HTTP (absolute-form), and ssl-bump intercepts CONNECT with
 * sidekey's own issuing CA (the same chain the agent trusts). Access log on, as sidekey's audit line is; no cache.
 */

const CERTGEN = '/usr/lib/squid/security_file_certgen'

export function squidBinary (): string | undefined {
  const r = spawnSync('squid', ['-v'], { encoding: 'utf8' })
  if (r.error !== undefined || !/--with-openssl/.test(r.stdout)) return undefined
  return 'squid'
}

export interface SquidStart {
  dir: string
  /** A sidekey CA dir: the issuing CA signs squid's generated leaves, so agents trust squid and sidekey alike. */
  caDir: string
  upstreamCaFile: string
  hosts: string[]
  /** Pin squid to these CPUs (taskset list), like the proxy children. */
  cpus?: string
}

export interface SquidProcess {
  port: number
  pid: number
  child: ChildProcess
  stop (): Promise<void>
}

export async function startSquid (o: SquidStart): Promise<SquidProcess> {
  const dir = join(o.dir, 'squid')
  mkdirSync(dir, { recursive: true })
  // squid drops to the `proxy` user after reading its config; the files it writes must be its own.
  const signing = join(dir, 'signing.pem')
  writeFileSync(signing, readFileSync(join(o.caDir, CA_ISSUER_FILE), 'utf8') + readFileSync(join(o.caDir, CA_KEY_FILE), 'utf8'), { mode: 0o600 })
  const upstreamCa = join(dir, 'upstream-ca.pem')
  writeFileSync(upstreamCa, readFileSync(o.upstreamCaFile))
  writeFileSync(join(dir, 'hosts'), o.hosts.map((h) => `127.0.0.1 ${h}\n`).join(''))
  const port = await freePort()
  const ssldb = join(dir, 'ssl_db')
  const conf = join(dir, 'squid.conf')
  writeFileSync(conf, `
http_port 127.0.0.1:${port} ssl-bump tls-cert=${signing} generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program ${CERTGEN} -s ${ssldb} -M 16MB
sslcrtd_children 4 startup=1 idle=1
ssl_bump bump all
tls_outgoing_options cafile=${upstreamCa}
http_access allow all
hosts_file ${join(dir, 'hosts')}
dns_nameservers 127.0.0.1
cache deny all
cache_mem 8 MB
access_log stdio:${join(dir, 'access.log')}
cache_log ${join(dir, 'cache.log')}
pid_filename ${join(dir, 'squid.pid')}
coredump_dir ${dir}
request_header_access Authorization deny all
request_header_add Authorization "Bearer squid-bench-token" all
forwarded_for delete
via off
visible_hostname sidekey-bench
workers 1
shutdown_lifetime 0 seconds
max_filedescriptors 16384
client_persistent_connections on
server_persistent_connections on
`)
  const proxyUser = spawnSync('id', ['-u', 'proxy'], { encoding: 'utf8' })
  const uid = Number(proxyUser.stdout.trim())
  if (process.getuid?.() === 0 && Number.isInteger(uid)) {
    chmodSync(o.dir, 0o755)
    for (const f of [dir, signing, upstreamCa, conf, join(dir, 'hosts')]) chownSync(f, uid, uid)
  }
  const init = spawnSync(CERTGEN, ['-c', '-s', ssldb, '-M', '16MB'], { encoding: 'utf8', ...(process.getuid?.() === 0 && Number.isInteger(uid) ? { uid, gid: uid } : {}) })
  if (init.status !== 0) throw new Error(`security_file_certgen -c failed: ${init.stderr}`)
  const cmd = o.cpus === undefined ? ['squid', ['-N', '-f', conf]] as const : ['taskset', ['-c', o.cpus, 'squid', '-N', '-f', conf]] as const
  const child = spawn(cmd[0], cmd[1], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
  await waitForPort(port, child, () => `${stderr}\n${safeRead(join(dir, 'cache.log'))}`)
  return {
    port,
    pid: child.pid!,
    child,
    stop: async () => { await stopChild(child, () => child.kill('SIGINT')) },
  }
}

function safeRead (file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000)
  } catch {
    return ''
  }
}

/** squid is ready when its port accepts; bounded at 20 s. */
async function waitForPort (port: number, child: ChildProcess, why: () => string): Promise<void> {
  const { connect } = await import('node:net')
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`squid exited (${child.exitCode}): ${why()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`squid did not listen within 20 s: ${why()}`)
}
