import {
  AUDIT_USAGE, INVENTORY_USAGE, REPORT_USAGE, SCOPES_USAGE, TASKS_USAGE, VERIFY_USAGE,
} from '../reports/usage.js'
import { CONFIG_OPTION, listing, type Command, type Io, type Options } from './command.js'

// `sidekey audit [VERB]`: the offline readers of the trail. Each loads only its own module, on use.

const JSON_OPTION = { json: { type: 'boolean' } } as const
const SINCE_OPTION = { since: { type: 'string' } } as const

type Reader = (argv: string[], io: Io) => Promise<number>

/** A sub-verb of audit: its options and usage here, its work in its reports/ module, loaded when it runs. */
function reader (verb: string, summary: string, usage: string, options: Options, load: () => Promise<Reader>): Command {
  return {
    name: `audit ${verb}`,
    summary,
    usage,
    options,
    operands: true,
    run: async (args, io) => (await load())([...args.argv], io),
  }
}

const verbs: readonly Command[] = [
  reader('scopes', 'what each tool was granted against what it used: grants to narrow', SCOPES_USAGE,
    { ...CONFIG_OPTION, ...SINCE_OPTION, ...JSON_OPTION },
    async () => (await import('../reports/scopes.js')).scopesCommand),
  reader('tasks', 'calls, tools and statuses per X-Sidekey-Task', TASKS_USAGE, JSON_OPTION,
    async () => (await import('../reports/tasks.js')).tasksCommand),
  reader('verify', 'check the trail\'s seals, chains and checkpoints', VERIFY_USAGE, {
    keys: { type: 'string', multiple: true },
    from: { type: 'string', multiple: true },
    fleet: { type: 'string' },
    live: { type: 'boolean' },
    ...JSON_OPTION,
  }, async () => (await import('../reports/verify/command.js')).verifyCommand),
  reader('inventory', 'what inventory mode saw, as draft tool entries', INVENTORY_USAGE,
    { yaml: { type: 'boolean' }, ...JSON_OPTION },
    async () => (await import('../reports/inventory-report.js')).inventoryCommand),
  reader('report', 'one self-contained HTML report of the trail', REPORT_USAGE, {
    out: { type: 'string', short: 'o' },
    ...CONFIG_OPTION,
    ...SINCE_OPTION,
    keys: { type: 'string', multiple: true },
    live: { type: 'boolean' },
  }, async () => (await import('../reports/report/report.js')).reportCommand),
]

/** `sidekey audit [--json] [FILE...]`: the summary; `sidekey audit VERB ...`: one of the other readers. */
export const audit: Command = {
  ...reader('', 'read the audit trail: a summary, or scopes, tasks, verify, inventory, report',
    `${AUDIT_USAGE}       sidekey audit VERB ...   (sidekey audit VERB --help for its own usage)\n` +
    `verbs:\n${listing(verbs)}`,
    JSON_OPTION, async () => (await import('../reports/summary.js')).auditCommand),
  name: 'audit',
  verbs,
}
