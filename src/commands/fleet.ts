import { FLEET_FORMS, FLEET_USAGE } from '../fleet/usage.js'
import { usageText } from '../util/usage.js'
import { CONFIG_OPTION, type Command, type Options } from './command.js'

// `sidekey fleet VERB`: signed commands and the fleet bucket. The NATS client loads only when a verb runs.

const SIGNED = {
  ...CONFIG_OPTION,
  key: { type: 'string' },
  reason: { type: 'string' },
  actor: { type: 'string' },
  wait: { type: 'string' },
} as const
const ACTION = { ...SIGNED, tool: { type: 'string' }, instance: { type: 'string' } } as const

function fleetVerb (verb: keyof typeof FLEET_FORMS, summary: string, options: Options, operands = false): Command {
  return {
    name: `fleet ${verb}`,
    summary,
    usage: usageText([FLEET_FORMS[verb]]),
    options,
    operands,
    async run (args, io) {
      const { fleetCommand } = await import('../fleet/cli.js')
      return fleetCommand([verb, ...args.argv], io)
    },
  }
}

const verbs: readonly Command[] = [
  fleetVerb('keygen', 'make an operator key pair and its JWKS', { out: { type: 'string' }, key: { type: 'string' } }),
  fleetVerb('lock', 'stop a tool\'s calls on one instance or all', ACTION),
  fleetVerb('unlock', 'lift a lock', ACTION),
  fleetVerb('revoke', 'drop a tool\'s credentials at once for a new one', ACTION),
  fleetVerb('rotate', 'a new credential now; the old one runs out', ACTION),
  fleetVerb('status', 'the instances, their locks and the stored commands', CONFIG_OPTION),
  fleetVerb('jwks', 'print (or --serve) the fleet\'s audit keys', { ...CONFIG_OPTION, serve: { type: 'string' } }),
  fleetVerb('approvals', 'the calls held for approval across the fleet', CONFIG_OPTION),
  fleetVerb('approve', 'release a held call, signed', SIGNED, true),
  fleetVerb('deny', 'refuse a held call, signed', SIGNED, true),
]

/** `sidekey fleet` without a verb it knows: the usage (or the fleet code's own word on an unknown verb), exit 2. */
export const fleet: Command = {
  name: 'fleet',
  summary: 'signed fleet commands: keygen, lock, unlock, revoke, rotate, status, jwks, approvals, approve, deny',
  usage: FLEET_USAGE,
  options: {},
  operands: true,
  verbs,
  async run (args, io) {
    if (args.argv.length === 0) {
      io.stderr.write(`sidekey fleet: which verb?\n${FLEET_USAGE}\n`)
      return 2
    }
    const { fleetCommand } = await import('../fleet/cli.js')
    return fleetCommand(args.argv, io)
  },
}
