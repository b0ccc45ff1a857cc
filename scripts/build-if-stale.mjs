// `npm start` builds only when dist/ is older than what it is built from: a start after an unchanged checkout
// goes straight to `sidekey run` instead of spending seconds on tsc and esbuild.
import { execFileSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

const INPUTS = ['src', 'scripts', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']

function newest (path) {
  let stat
  try { stat = statSync(path) } catch { return 0 }
  if (!stat.isDirectory()) return stat.mtimeMs
  return readdirSync(path).reduce((m, name) => Math.max(m, newest(join(path, name))), stat.mtimeMs)
}

let built = 0
try { built = statSync('dist/cli.js').mtimeMs } catch {}
const changed = Math.max(...INPUTS.map(newest))
if (built === 0 || changed > built) {
  execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'build', '--silent'], { stdio: 'inherit' })
} else {
  process.stdout.write('dist/ is up to date with src/: not rebuilt (npm run build forces it)\n')
}
