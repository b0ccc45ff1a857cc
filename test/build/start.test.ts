import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'

const script = resolve('scripts/build-if-stale.mjs')

t.test('npm start rebuilds only when dist/ is older than what it is built from', async (t) => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }
  t.equal(pkg.scripts.prestart, 'node scripts/build-if-stale.mjs')
  // A project of its own whose build leaves a mark, so a rebuild is seen without running tsc.
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-start-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'src'))
  mkdirSync(join(dir, 'dist'))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ scripts: { build: 'node -e "require(\'fs\').writeFileSync(\'built\', \'\')"' } }))
  writeFileSync(join(dir, 'src', 'cli.ts'), '')
  writeFileSync(join(dir, 'dist', 'cli.js'), '')
  const at = (path: string, seconds: number): void => utimesSync(join(dir, path), seconds, seconds)
  for (const p of ['src/cli.ts', 'src', 'package.json']) at(p, 1_000)
  at('dist/cli.js', 2_000)
  const run = (): string => execFileSync(process.execPath, [script], { cwd: dir, encoding: 'utf8' })
  t.match(run(), /dist\/ is up to date with src\/: not rebuilt/)
  t.notOk(existsSync(join(dir, 'built')), 'no build ran')
  at('src/cli.ts', 3_000)
  run()
  t.ok(existsSync(join(dir, 'built')), 'a source newer than dist/ is rebuilt')
  rmSync(join(dir, 'built'))
  rmSync(join(dir, 'dist'), { recursive: true })
  run()
  t.ok(existsSync(join(dir, 'built')), 'no dist/ at all is built')
})
