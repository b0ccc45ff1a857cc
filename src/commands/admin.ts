import { ADMIN_FORMS, ADMIN_NOTE, ADMIN_USAGE } from '../admin/usage.js'
import { usageText } from '../util/usage.js'
import { CONFIG_OPTION, type Command, type Io } from './command.js'

// `sidekey admin VERB`: a running sidekey's admin port.

const TARGET = { ...CONFIG_OPTION, admin: { type: 'string' } } as const

async function adminCommand (argv: readonly string[], io: Io): Promise<number> {
  return (await import('../admin/cli.js')).adminCommand(argv, io)
}

function adminVerb (verb: keyof typeof ADMIN_FORMS, summary: string, rotate = false): Command {
  return {
    name: `admin ${verb}`,
    summary,
    usage: usageText([ADMIN_FORMS[verb]], ADMIN_NOTE),
    options: rotate ? { ...TARGET, 'revoke-previous': { type: 'boolean' } } : TARGET,
    operands: rotate,
    run: (args, io) => adminCommand([verb, ...args.argv], io),
  }
}

/** Its verbs' words may come in any order (`sidekey admin --config x status`): the admin code reads them as typed. */
export const admin: Command = {
  name: 'admin',
  summary: 'talk to a running sidekey\'s admin port: status, rotate TOOL, reload',
  usage: ADMIN_USAGE,
  options: { ...TARGET, 'revoke-previous': { type: 'boolean' } },
  operands: true,
  verbs: [
    adminVerb('status', 'what the running sidekey serves, and its credentials\' state'),
    adminVerb('rotate', 'fetch a tool\'s credential anew', true),
    adminVerb('reload', 're-read the config, as SIGHUP does'),
  ],
  run: (args, io) => adminCommand(args.argv, io),
}
