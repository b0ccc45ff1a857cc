import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Runs `sidekey ARGS` from the sources, as a user would run the built CLI; resolves with its exit code and output.
 * `built: true` runs dist/cli.js instead (`npm test` builds first): no compile step, for tests that run it often.
 */
export function cli (args: readonly string[], opts: { built?: boolean } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const entry = opts.built === true ? [join(root, 'dist', 'cli.js')] : ['--import=@tapjs/typescript/import', join(root, 'src', 'cli.ts')]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...entry, ...args], {
      cwd: root, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
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
