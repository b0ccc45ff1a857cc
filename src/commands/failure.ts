import { ConfigError, formatProblems } from '../config/config-error.js'
import { SidekeyError } from '../errors.js'
import type { Io } from '../util/io.js'

/**
 * The exit code for a failure a verb threw, and what the user reads of it: config problems as `FILE:LINE:COL:
 * message` on `problems` (stdout for check, which reports them as its result), anything else as one line with its
 * code on stderr. Never a stack trace. 2 for a config or usage problem, 1 for anything else.
 */
export function reportFailure (err: unknown, io: Pick<Io, 'stderr'>, problems = io.stderr): number {
  if (err instanceof ConfigError) {
    for (const line of formatProblems(err.problems)) problems.write(line + '\n')
    return 2
  }
  if (err instanceof SidekeyError) {
    io.stderr.write(`sidekey: ${err.message} (${err.code})\n`)
    return err.code === 'SIDEKEY_CONFIG_INVALID' ? 2 : 1
  }
  const code = (err as { code?: string })?.code ?? (err as Error)?.name ?? 'error'
  io.stderr.write(`sidekey: unexpected failure (${code})\n`)
  return 1
}
