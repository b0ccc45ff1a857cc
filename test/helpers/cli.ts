import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Runs `sidekey ARGS` as a user runs it: the bundled dist/cli.js (`npm test` builds first; run `npm run build`
 * before a single test file after changing src/). Spawning the sources through ts-node cost ~1.9 s a start against
 * ~0.2 s for the bundle.
 */
export function cli (args: readonly string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const entry = [join(root, 'dist', 'cli.js')]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...entry, ...args], {
      cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    // Bounded: a CLI that hangs fails the test instead of the run.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** What `sidekey run` logs once it serves: its addresses and the CA agents must trust. */
export interface ListeningLine { proxy: string, admin: string, ca: string }

/** The `listening` line in sidekey's output so far, if a whole one is there (the text may end inside a line). */
export function listeningIn (text: string): ListeningLine | undefined {
  const line = text.split('\n').slice(0, -1).find((l) => l.includes('"msg":"listening"'))
  return line === undefined ? undefined : JSON.parse(line) as ListeningLine
}

/**
 * The `listening` line a started `sidekey run` writes on stdout (a pipe), within `ms`; rejects, with what it
 * printed, if it exits first. Its output keeps flowing afterwards, so that a full pipe never stalls it.
 */
export function listeningLine (child: ChildProcess, ms: number): Promise<ListeningLine> {
  const stdout = child.stdout
  if (stdout === null) return Promise.reject(new Error('listeningLine needs the child\'s stdout as a pipe'))
  return new Promise((resolve, reject) => {
    let text = ''
    const onData = (c: Buffer): void => {
      text += c.toString()
      const line = listeningIn(text)
      if (line !== undefined) { done(); resolve(line) }
    }
    const onStderr = (c: Buffer): void => { text += c.toString() }
    const onExit = (code: number | null): void => { done(); reject(new Error(`sidekey exited (${code}) before listening: ${text.slice(0, 500)}`)) }
    const timer = setTimeout(() => { done(); reject(new Error(`no "listening" line in ${ms / 1000} s: ${text.slice(0, 500)}`)) }, ms)
    const done = (): void => {
      clearTimeout(timer)
      stdout.off('data', onData)
      child.stderr?.off('data', onStderr)
      child.off('exit', onExit)
      stdout.resume()
    }
    stdout.on('data', onData)
    child.stderr?.on('data', onStderr)
    child.once('exit', onExit)
  })
}
