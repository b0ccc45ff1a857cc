import t from 'tap'
import { readFileSync } from 'node:fs'
import { PassThrough, Writable } from 'node:stream'
import { runCommand, type Command, type Io } from '../../src/commands/command.js'
import { VERBS } from '../../src/commands/verbs.js'
import { cli } from '../helpers/cli.js'

/** Every command the CLI knows, sub-verbs included, found by walking the table `sidekey` dispatches on. */
async function everyCommand (): Promise<Command[]> {
  const out: Command[] = []
  const walk = (c: Command): void => { out.push(c); for (const v of c.verbs ?? []) walk(v) }
  for (const load of VERBS.values()) walk(await load())
  return out
}

function captured (): { io: Io, out: () => string, err: () => string } {
  let out = ''
  let err = ''
  const sink = (add: (s: string) => void): Writable => new Writable({ write (c, _e, cb) { add(c.toString()); cb() } })
  return {
    io: { stdin: new PassThrough(), stdout: sink((s) => { out += s }), stderr: sink((s) => { err += s }), env: {} },
    out: () => out,
    err: () => err,
  }
}

/** The first line of a verb's own usage: `usage: sidekey fleet lock ...` (run's name is optional: `[run]`). */
const usageOf = (name: string): RegExp =>
  name === 'run' ? /^usage: sidekey \[run\] / : new RegExp(`^usage: sidekey ${name}( |\\n)`)

t.test('every verb and sub-verb: --help prints its own usage (exit 0); an option it does not take exits 2', async (t) => {
  const commands = await everyCommand()
  const names = commands.map((c) => c.name)
  for (const some of ['check', 'audit verify', 'fleet lock', 'fleet deny', 'admin rotate', 'approvals list']) {
    t.ok(names.includes(some), `the walk reaches ${some}`)
  }
  for (const command of commands) {
    const { name } = command
    const parent = name.includes(' ') ? name.slice(0, name.lastIndexOf(' ')) : undefined
    const words = name.split(' ').slice(1)
    const root = commands.find((c) => c.name === name.split(' ')[0])!
    const help = captured()
    t.equal(await runCommand(root, [...words, '--help'], help.io), 0, `${name} --help exits 0`)
    t.match(help.out(), usageOf(name), `${name} --help: its own usage`)
    t.equal(help.err(), '', `${name} --help: nothing on stderr`)
    if (parent !== undefined) t.not(command.usage, commands.find((c) => c.name === parent)!.usage, `${name}: not its group's usage`)
    const bad = captured()
    t.equal(await runCommand(root, [...words, '--no-such-option'], bad.io), 2, `${name} --no-such-option exits 2`)
    t.match(bad.err(), `sidekey ${name}: Unknown option '--no-such-option'`, `${name}: names the option`)
    t.match(bad.err().split('\n')[1], usageOf(name), `${name}: then its usage`)
    t.equal(bad.out(), '', `${name}: nothing on stdout`)
    t.ok(command.summary.length > 0 && !command.summary.includes('\n'), `${name}: a one-line summary`)
  }
})

t.test('a verb that takes no operand refuses one instead of ignoring it', async (t) => {
  const check = await VERBS.get('check')!()
  const r = captured()
  t.equal(await runCommand(check, ['extra.yaml'], r.io), 2)
  t.match(r.err(), /^sidekey check: Unexpected argument 'extra\.yaml'/)
})

t.test('a control character in an unknown option is shown, not sent to the terminal', async (t) => {
  const r = captured()
  t.equal(await runCommand(await VERBS.get('schema')!(), ['--x\u001b]0;owned\u0007'], r.io), 2)
  t.notMatch(r.err(), /\p{Cc}(?<!\n)/u, 'no control character but the newlines')
  t.match(r.err(), '\\x1b]0;owned\\x07')
})

// The built CLI, spawned as a user runs it (`npm run build` first).

t.test('sidekey: --help and -h on each verb, help, --version, an unknown verb or option', async (t) => {
  const top = [...VERBS.keys()]
  const [helps, bads, listings, typo, far, version, subHelp, helpVerb] = await Promise.all([
    Promise.all(top.map((v) => cli([v, v === 'fleet' ? '-h' : '--help']))),
    Promise.all(top.map((v) => cli([v, '--no-such-option']))),
    Promise.all([cli(['help']), cli(['--help'])]),
    cli(['chekc', '--config', 'x.yaml']),
    cli(['deploy']),
    cli(['--version']),
    cli(['fleet', 'lock', '--help']),
    cli(['help', 'approvals']),
  ])
  top.forEach((verb, i) => {
    t.equal(helps[i]!.code, 0, `sidekey ${verb} --help: exit 0`)
    t.match(helps[i]!.stdout, usageOf(verb), `sidekey ${verb} --help: its usage`)
    t.equal(bads[i]!.code, 2, `sidekey ${verb} --no-such-option: exit 2`)
    t.match(bads[i]!.stderr, `sidekey ${verb}: Unknown option '--no-such-option'`)
  })
  for (const r of listings) {
    t.equal(r.code, 0)
    for (const verb of top) t.match(r.stdout, new RegExp(`\\n {2}${verb} +\\S`), `help lists ${verb} with a summary`)
  }
  t.equal(typo.code, 2, 'an unknown verb: exit 2')
  t.match(typo.stderr, /^sidekey: unknown command "chekc"; the commands are run, check, ca, audit, schema, fleet/)
  t.match(typo.stderr, 'did you mean: sidekey check?', 'the nearest verb')
  t.match(typo.stderr, /\n {2}approvals +calls held/, 'and the verbs')
  t.equal(far.code, 2)
  t.notMatch(far.stderr, /did you mean/, 'nothing close: no guess')
  const { version: pkg } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }
  t.equal(version.stdout, `sidekey ${pkg}\n`)
  t.match(subHelp.stdout, usageOf('fleet lock'), 'a sub-verb\'s own usage')
  t.match(helpVerb.stdout, usageOf('approvals'), 'sidekey help VERB is VERB --help')
})
