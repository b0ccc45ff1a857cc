#!/usr/bin/env node
import { VERSION } from './app.js'
import { listing, processIo, runCommand, type Io } from './commands/command.js'
import { reportFailure } from './commands/failure.js'
import { nearest } from './commands/nearest.js'
import { run } from './commands/run.js'
import { NAMES, VERBS } from './commands/verbs.js'

/** Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage. */
async function main (argv: readonly string[], io: Io): Promise<number> {
  const [first, ...rest] = argv
  if (first === '--version' || first === '-V') {
    io.stdout.write(`sidekey ${VERSION}\n`)
    return 0
  }
  if (first === 'help' || first === '--help' || first === '-h') {
    const verb = rest[0] === undefined ? undefined : VERBS.get(rest[0])
    if (verb !== undefined) return runCommand(await verb(), ['--help'], io)
    if (rest[0] === undefined) {
      io.stdout.write(await help())
      return 0
    }
  }
  // `sidekey --config x.yaml` runs; `sidekey chekc` is a typo, not a run with a stray argument.
  if (first === undefined || first.startsWith('-')) return runCommand(run, argv, io)
  const load = VERBS.get(first)
  if (load !== undefined) return runCommand(await load(), rest, io)
  const word = first === 'help' ? rest[0]! : first
  const guess = nearest(word, NAMES)
  io.stderr.write(`sidekey: unknown command ${JSON.stringify(word)}; the commands are ${NAMES.join(', ')}\n` +
    `${guess === undefined ? '' : `did you mean: sidekey ${guess}?\n`}\n${await help()}`)
  return 2
}

/** Every verb with its one-line summary, and how to get a verb's own usage. */
async function help (): Promise<string> {
  const commands = await Promise.all([...VERBS.values()].map((load) => load()))
  return 'usage: sidekey [VERB] [OPTIONS...]   (without a VERB: run)\n' +
    '       sidekey VERB --help           (that verb\'s own usage; also sidekey help VERB)\n' +
    '       sidekey --version\n\nverbs:\n' +
    listing(commands) +
    '\n--config defaults to $SIDEKEY_CONFIG, then config/sidekey.yaml.\n'
}

const io = processIo()
main(process.argv.slice(2), io).then((code) => {
  process.exitCode = code
  // Anything still holding the loop open after a clean stop (an upstream socket, a watcher) must not keep us up.
  setTimeout(() => process.exit(code), 2000).unref()
}, (err: unknown) => { process.exitCode = reportFailure(err, io) })
