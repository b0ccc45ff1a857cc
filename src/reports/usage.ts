// What each `sidekey audit` verb prints for --help and after a usage error: here, apart from the readers, so the
// CLI shows it without loading them.

const FILES = '(FILE may be .gz; none or - reads stdin)'

export const AUDIT_USAGE = `usage: sidekey audit [--json] [FILE...]   ${FILES}\n`

export const SCOPES_USAGE = 'usage: sidekey audit scopes --config FILE [--since 30d|all] [--json] [FILE...]   ' +
  `${FILES}\n`

export const TASKS_USAGE = `usage: sidekey audit tasks [--json] [FILE...]   ${FILES}\n`

export const INVENTORY_USAGE = `usage: sidekey audit inventory [--yaml] [--json] [FILE...]   ${FILES}\n`

export const REPORT_USAGE = 'usage: sidekey audit report --out report.html [--config FILE] [--keys JWKS]... [--live]' +
  ' [--since 30d|all] [FILE...]\n' +
  '  FILE may be .gz; none or - reads stdin\n' +
  '  --keys JWKS  the audit keys (GET /audit-key of each instance) the integrity section checks the trail against\n' +
  '  --live       the trail is still being written: the newest run of an instance may end after its last checkpoint\n'

export const VERIFY_USAGE = 'usage: sidekey audit verify [--keys JWKS]... [--from URL]... [--fleet CONFIG] [--live]' +
  ` [--json] [FILE...]
  FILE may be gzip; none or - reads stdin. Lines of several instances and runs may be interleaved.
  --keys JWKS     the audit keys to trust: a file with the JWKS of each instance's GET /audit-key (or a JWK, or
                  an array of them)
  --from URL      the key of a running sidekey, fetched from its admin port (URL, or URL/audit-key without a path)
  --fleet CONFIG  the checkpoint each instance published last in the fleet bucket of CONFIG's fleet: section: the
                  run's key must have signed it, and the run's chain must reach it
  --live          the trail is still being written: the newest run of an instance may end after its last checkpoint
  --json          the result as JSON
  Without --keys, --from or --fleet the keys come from the trail itself, which whoever rewrites it can swap.
exit 0 intact: every event sealed, every chain and checkpoint holds, every run's key vouched for from outside
     1 not intact: a run broken, an event without a seal, no event at all, or a file unreadable
     2 usage, or the keys (--keys, --from, --fleet) could not be read
     3 consistent, not authenticated: the chain holds, but no key from outside the trail vouches for every run
`
