import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { Io } from '../util/io.js'

export type { Io }

export type Options = NonNullable<ParseArgsConfig['options']>

/** A verb's words after its name, parsed against its options. */
export interface Args {
  readonly values: Readonly<Record<string, string | boolean | Array<string | boolean> | undefined>>
  readonly positionals: readonly string[]
  /** The words as typed, for a verb whose own function reads them again (the audit, fleet and admin verbs). */
  readonly argv: readonly string[]
}

/**
 * One verb of the CLI (`check`, `audit verify`, `fleet lock`): what it is called, what it does in a line, how it is
 * typed, the options it takes, and what it runs. Only wiring: the work is in the function `run` calls.
 */
export interface Command {
  /** The words after `sidekey`: `audit`, `fleet lock`. */
  readonly name: string
  readonly summary: string
  /** Printed on --help (stdout) and after a usage error (stderr). */
  readonly usage: string
  /** Every option it takes; --help and -h are added to each. */
  readonly options: Options
  /** Whether it takes operands (files, an id); without, an operand is a usage error. */
  readonly operands?: boolean
  /** Its own verbs, picked by the first word; a first word that is none of them is `run`'s. */
  readonly verbs?: readonly Command[]
  run (args: Args, io: Io): Promise<number>
}

/**
 * Runs `command` (or the sub-verb `argv` names) on `argv`. Exit codes: `--help` prints the verb's own usage and
 * exits 0; an option it does not take, or an operand it takes none of, exits 2 naming it, with the usage.
 */
export async function runCommand (command: Command, argv: readonly string[], io: Io): Promise<number> {
  const sub = command.verbs?.find((v) => v.name === `${command.name} ${argv[0] ?? ''}`)
  if (sub !== undefined) return runCommand(sub, argv.slice(1), io)
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: command.operands === true,
    })
  } catch (err) {
    // Its first sentence names the option; control characters in what was typed are shown, never sent.
    const why = (err as Error).message.split('. To specify')[0]!
      .replace(/\p{Cc}/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    io.stderr.write(`sidekey ${command.name}: ${why}\n${withNewline(command.usage)}`)
    return 2
  }
  if (parsed.values.help === true) {
    io.stdout.write(withNewline(command.usage))
    return 0
  }
  return command.run({ values: parsed.values, positionals: parsed.positionals, argv }, io)
}

/** The process's own streams and environment; stdin is opened only if a verb reads it. */
export function processIo (): Io {
  return {
    get stdin () { return process.stdin },
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  }
}

/** The string value of option `name`, if given. */
export function stringOption (args: Args, name: string): string | undefined {
  const v = args.values[name]
  return typeof v === 'string' ? v : undefined
}

/** Verbs one a line, each with its summary, as `sidekey help` and a verb with verbs of its own list them. */
export function listing (commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length))
  return commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}\n`).join('')
}

function withNewline (text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`
}

/** `--config`, else $SIDEKEY_CONFIG, else config/sidekey.yaml. */
export function configPath (args: Args, io: Pick<Io, 'env'>): string {
  return stringOption(args, 'config') ?? io.env.SIDEKEY_CONFIG ?? 'config/sidekey.yaml'
}

/** The --config option as every verb that reads the config takes it. */
export const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const
