import { APPROVALS_FORMS, APPROVALS_NOTE, APPROVALS_USAGE } from '../approvals/usage.js'
import { usageText } from '../util/usage.js'
import { CONFIG_OPTION, type Command, type Io } from './command.js'

// `sidekey approvals VERB`: the calls a running sidekey holds for approval.

const TARGET = { ...CONFIG_OPTION, admin: { type: 'string' } } as const
const DECISION = { ...TARGET, reason: { type: 'string' } } as const

async function approvalsCommand (argv: readonly string[], io: Io): Promise<number> {
  return (await import('../approvals/cli.js')).approvalsCommand(argv, io)
}

function approvalsVerb (verb: keyof typeof APPROVALS_FORMS, summary: string): Command {
  const deciding = verb !== 'list'
  return {
    name: `approvals ${verb}`,
    summary,
    usage: usageText([APPROVALS_FORMS[verb]], APPROVALS_NOTE),
    options: deciding ? DECISION : { ...TARGET, json: { type: 'boolean' } },
    operands: deciding,
    run: (args, io) => approvalsCommand([verb, ...args.argv], io),
  }
}

/** Its verbs' words may come in any order: the approvals code reads them as typed. */
export const approvals: Command = {
  name: 'approvals',
  summary: 'calls held for approval on a running sidekey: list, approve ID, deny ID',
  usage: APPROVALS_USAGE,
  options: { ...DECISION, json: { type: 'boolean' } },
  operands: true,
  verbs: [
    approvalsVerb('list', 'the calls waiting, newest last'),
    approvalsVerb('approve', 'let a held call through'),
    approvalsVerb('deny', 'refuse a held call'),
  ],
  run: (args, io) => approvalsCommand(args.argv, io),
}
