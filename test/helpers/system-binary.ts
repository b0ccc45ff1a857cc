import { access, constants } from 'node:fs/promises'
import { delimiter, join } from 'node:path'

/**
 * A system program a test needs (promtool, nats-server, chromium, squid, python3 with botocore). On a machine with
 * only Node the test skips with one line naming the Debian package; under `CI=true` a missing program is a failure,
 * because `.ci/run` installs them all.
 */
export interface SystemBinary {
  /** Absolute path, or undefined when absent. */
  readonly path: string | undefined
  /** The tap `skip` option: a one-line reason off CI when absent, else false. */
  readonly skip: string | false
  /** Call inside the test: fails it under CI when the program is absent. */
  readonly required: boolean
}

export async function onPath (name: string): Promise<string | undefined> {
  if (name.includes('/')) return await executable(name) ? name : undefined
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d === '') continue
    const p = join(d, name)
    if (await executable(p)) return p
  }
  return undefined
}

async function executable (p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * `const nats = await systemBinary('nats-server', 'nats-server')`, then
 * `t.test('…', { skip: nats.skip }, async (t) => { if (!needBinary(t, nats, …)) return; … })`.
 */
export async function systemBinary (name: string, debianPackage: string, candidates: string[] = []): Promise<SystemBinary & { name: string, debianPackage: string }> {
  let path: string | undefined
  for (const c of [name, ...candidates]) {
    path = await onPath(c)
    if (path !== undefined) break
  }
  const ci = process.env.CI === 'true' || process.env.CI === '1'
  const skip = path === undefined && !ci ? `${name} not installed (Debian/Ubuntu: apt-get install -y ${debianPackage}; .ci/run installs it)` : false
  return { name, debianPackage, path, skip, required: ci }
}

/** True when the binary is there; under CI a missing one fails the test with the install line. */
export function needBinary (t: { fail: (msg: string) => unknown }, bin: { name: string, debianPackage: string, path: string | undefined }): boolean {
  if (bin.path !== undefined) return true
  t.fail(`${bin.name} is not installed: apt-get install -y ${bin.debianPackage} (CI=true makes its absence a failure)`)
  return false
}
