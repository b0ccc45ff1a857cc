import type { ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

/** Linux /proc readings for processes the bench did not fork with an IPC channel (squid, the sidekey CLI). */

const TICK_US = 10_000 // USER_HZ is 100 on Linux

/** utime + stime of one process, µs. */
export function processCpuUs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK_US
}

function rssOf (pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? 0 : Number(m[1]) * 1024
  } catch {
    return 0
  }
}

/** RSS of a process and its direct children (squid's certificate helpers count as squid's), bytes. */
export function processTreeRss (pid: number): number {
  let total = rssOf(pid)
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) total += rssOf(Number(entry))
    } catch { /* gone */ }
  }
  return total
}

/**
 * Stops a child the bench started: `ask` asks it to exit (a signal, or an IPC message), and after 10 s it is
 * killed; resolves once it has exited.
 */
export async function stopChild (child: ChildProcess, ask: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  ask()
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(kill)
}
