import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, formatProblems } from '../../src/config/load.js'

/** Absolute path of a config fixture. */
export const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url))

/** The repository's default config. */
export const defaultConfigFile = fileURLToPath(new URL('../../config/sidekey.yaml', import.meta.url))

/** The `FILE:LINE:COL: message` lines a rejected config produces; fails loudly when the config was accepted. */
export async function rejectionOf (load: () => unknown): Promise<{ error: ConfigError, lines: string[] }> {
  try {
    await load()
  } catch (err) {
    if (err instanceof ConfigError) return { error: err, lines: formatProblems(err.problems) }
    throw err
  }
  throw new Error('expected the config to be rejected, it was accepted')
}

/** A minimal valid config with `extra` appended under `tools:` (indented by the caller). */
export const minimal = (tools: string, head = ''): string =>
  `instance_id: t\n${head}issuers:\n  local:\n    type: local_jwt\ntools:\n${tools}`

/** Runs `sidekey ARGS` from the sources, as a user would run the built CLI; resolves with its exit code and output. */
export function cli (args: readonly string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import=@tapjs/typescript/import', join(root, 'src', 'cli.ts'), ...args], {
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
