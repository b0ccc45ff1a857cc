import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import type { KeyPath } from './yaml-source.js'

/** A file the config names that `run` would not be able to use, at the key that names it. */
export interface FileProblem { readonly path: KeyPath, readonly file: string, readonly fault: string }

/** Files sidekey writes itself (created when missing): never a problem when absent. */
const WRITTEN = new Set(['state_file'])

/**
 * What `run` would hit later: every file the config names (secret files, token files, keys, CA bundles, operator
 * keys, a `file` issuer's `path`) must exist and be readable, and an `exec` issuer's command must be executable.
 * `run` starts anyway (a secret mounted late still works once it appears) but then answers `credential_unavailable`;
 * `sidekey check` reports them first. Reads the raw config tree, so each problem keeps its YAML position.
 */
export function fileProblems (data: unknown, env: NodeJS.ProcessEnv = process.env): FileProblem[] {
  const problems: FileProblem[] = []
  const visit = (value: unknown, path: KeyPath): void => {
    if (typeof value !== 'object' || value === null) return
    for (const [key, v] of Object.entries(value)) {
      const at = [...path, key]
      if (typeof v === 'string' && namesFile(key, value)) {
        const fault = unreadable(v)
        if (fault !== undefined) problems.push({ path: at, file: v, fault })
      } else if (key === 'command' && (value as { type?: unknown }).type === 'exec' &&
        Array.isArray(v) && typeof v[0] === 'string') {
        const fault = notExecutable(v[0], env)
        if (fault !== undefined) problems.push({ path: [...at, 0], file: v[0], fault })
      } else {
        visit(v, at)
      }
    }
  }
  visit(data, [])
  return problems
}

function namesFile (key: string, parent: object): boolean {
  if (WRITTEN.has(key)) return false
  if (key.endsWith('_file') || key === 'operator_keys') return true
  return key === 'path' && (parent as { type?: unknown }).type === 'file'
}

function unreadable (file: string): string | undefined {
  try {
    if (statSync(file).isDirectory()) return 'is a directory, not a file'
    accessSync(file, constants.R_OK)
    return undefined
  } catch (err) {
    return describe(err)
  }
}

/** A command with a slash is a path; a bare name is looked up on PATH, as the exec issuer's spawn does. */
function notExecutable (command: string, env: NodeJS.ProcessEnv): string | undefined {
  if (command.includes('/')) return executable(command) ? undefined : unreadable(command) ?? 'is not executable'
  const dirs = (env.PATH ?? '').split(delimiter).filter((d) => d !== '')
  return dirs.some((d) => executable(join(d, command))) ? undefined : 'not found on PATH'
}

function executable (file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return statSync(file).isFile()
  } catch {
    return false
  }
}

function describe (err: unknown): string {
  switch ((err as { code?: unknown } | null)?.code) {
    case 'ENOENT': return 'no such file'
    case 'EACCES': case 'EPERM': return 'cannot be read (permission denied)'
    case 'ENOTDIR': return 'no such file (a parent is not a directory)'
    default: return 'cannot be read'
  }
}
