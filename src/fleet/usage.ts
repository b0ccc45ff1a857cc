import { usageText } from '../util/usage.js'

// What `sidekey fleet` prints for --help and after a usage error, verb by verb: apart from the NATS client, so the
// CLI shows it without loading that.

const ACTION = "--config FILE --key KEY --tool NAME|'*' [--instance ID|'*']\n                     --reason TEXT " +
  '[--actor NAME] [--wait 10s]'
const DECISION = 'ID --config FILE --key KEY [--reason TEXT] [--actor NAME] [--wait 10s]'

/** Each fleet verb's form, after `sidekey `. */
export const FLEET_FORMS = {
  keygen: 'fleet keygen --out DIR [--key PEM]',
  lock: `fleet lock ${ACTION}`,
  unlock: `fleet unlock ${ACTION}`,
  revoke: `fleet revoke ${ACTION}`,
  rotate: `fleet rotate ${ACTION}`,
  status: 'fleet status --config FILE',
  jwks: 'fleet jwks --config FILE [--serve HOST:PORT]',
  approvals: 'fleet approvals --config FILE',
  approve: `fleet approve ${DECISION}`,
  deny: `fleet deny ${DECISION}`,
} as const

const HELD = [FLEET_FORMS.approvals, `fleet approve|deny ${DECISION}`]

export const FLEET_USAGE = usageText([
  FLEET_FORMS.keygen, `fleet lock|unlock|revoke|rotate ${ACTION}`, FLEET_FORMS.status, FLEET_FORMS.jwks, ...HELD,
])

export const FLEET_APPROVAL_USAGE = usageText(HELD)
