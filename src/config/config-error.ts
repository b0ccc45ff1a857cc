import { SidekeyError } from '../errors.js'

/** One thing wrong with a config file, at the YAML position of the offending key or value (1-based). */
export interface ConfigProblem {
  readonly file: string
  readonly line: number
  readonly col: number
  /** Dotted key path, e.g. `tools.github.match.host`; `[0]` for list items, `["a.b"]` for keys with dots. */
  readonly path: string
  /**
   * Starts with the key path (`tools.github.issuer: unknown issuer "corp"`); never carries a secret or an
   * environment value.
   */
  readonly message: string
}

/**
 * Every problem found in a config, all at once (not just the first).
 *
 * @example
 *   try { await loadConfigFile(file) } catch (err) {
 *     if (err instanceof ConfigError) for (const line of formatProblems(err.problems)) process.stderr.write(line +
 * '\n')   }
 */
export class ConfigError extends SidekeyError {
  readonly problems: readonly ConfigProblem[]
  constructor (file: string, problems: readonly ConfigProblem[]) {
    const n = problems.length
    const lines = formatProblems(problems).join('\n')
    super('SIDEKEY_CONFIG_INVALID', `${file}: ${n} config problem${n === 1 ? '' : 's'}\n${lines}`, { expose: false })
    this.name = 'ConfigError'
    this.problems = Object.freeze(problems.map((p) => Object.freeze({ ...p })))
  }
}

/** `FILE:LINE:COL: message`, one line per problem, the form `sidekey check` prints and editors jump to. */
export function formatProblems (problems: readonly ConfigProblem[]): string[] {
  return problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`)
}
