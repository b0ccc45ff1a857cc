import { usageText } from '../util/usage.js'

// What `sidekey admin` prints for --help and after a usage error: apart from the client, so the CLI shows it without
// loading the config loader.

/** Which sidekey a verb talks to. */
export const ADMIN_TARGET = '[--config FILE] [--admin HOST:PORT]'

/** Each admin verb's form, after `sidekey `. */
export const ADMIN_FORMS = {
  status: `admin status ${ADMIN_TARGET}`,
  rotate: `admin rotate TOOL [--revoke-previous] ${ADMIN_TARGET}`,
  reload: `admin reload ${ADMIN_TARGET}`,
} as const

export const ADMIN_NOTE = 'Talks to a running sidekey\'s admin port (admin.listen, or --admin). rotate and reload ' +
  'send the admin token from\nadmin.token_file, else from the file sidekey made beside the CA (ca.dir/admin-token): ' +
  'run it as sidekey\'s user.'

export const ADMIN_USAGE = usageText(Object.values(ADMIN_FORMS), ADMIN_NOTE)
