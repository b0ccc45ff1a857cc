import { usageText } from '../util/usage.js'
import { ADMIN_TARGET } from '../admin/usage.js'

// What `sidekey approvals` prints for --help and after a usage error: apart from the client, so the CLI shows it
// without loading the config loader.

/** Each approvals verb's form, after `sidekey `. */
export const APPROVALS_FORMS = {
  list: `approvals list [--json] ${ADMIN_TARGET}`,
  approve: `approvals approve ID [--reason TEXT] ${ADMIN_TARGET}`,
  deny: `approvals deny ID [--reason TEXT] ${ADMIN_TARGET}`,
} as const

export const APPROVALS_NOTE = 'Calls held for approval on a running sidekey (its admin port, with the admin token, ' +
  'as sidekey admin reads it).'

export const APPROVALS_USAGE = usageText(Object.values(APPROVALS_FORMS), APPROVALS_NOTE)
