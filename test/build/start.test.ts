import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'

// `npm test` has just built dist/: `npm start`'s prestart must see it as current and go straight to run.
t.test('npm start does not rebuild a dist/ that is newer than its sources', async (t) => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }
  t.equal(pkg.scripts.prestart, 'node scripts/build-if-stale.mjs')
  const out = execFileSync(process.execPath, ['scripts/build-if-stale.mjs'], { encoding: 'utf8' })
  t.match(out, /dist\/ is up to date with src\/: not rebuilt/)
})
