// Writes a synthetic audit trail of N lines, for measuring `sidekey audit report` at scale:
//   TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/audit-trail.ts /tmp/trail.log 1000000
//   time node dist/cli.js audit report --out /tmp/report.html /tmp/trail.log
import { createWriteStream } from 'node:fs'
import { syntheticTrail } from '../audit/trail-generator.js'

const [file, count] = process.argv.slice(2)
if (file === undefined) throw new Error('usage: audit-trail.ts OUT [LINES]')
const out = createWriteStream(file)
for (const line of syntheticTrail(Number(count ?? 1_000_000))) {
  if (!out.write(line + '\n')) await new Promise<void>((resolve) => out.once('drain', () => resolve()))
}
out.end()
