import t from 'tap'
import { execFile } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url))

async function onPath (name: string): Promise<string | undefined> {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d === '') continue
    try {
      await access(join(d, name), constants.X_OK)
      return join(d, name)
    } catch { /* next */ }
  }
  return undefined
}

function run (cmd: string, args: string[]): Promise<{ code: number, output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: dir, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr })
    })
  })
}

const promtool = await onPath('promtool')
const skip = promtool === undefined && process.env.SIDEKEY_SKIP_PROMTOOL === '1' ? 'promtool not on PATH (SIDEKEY_SKIP_PROMTOOL=1)' : false

t.test('the alert rules pass promtool check and their unit tests', { skip }, async (t) => {
  if (promtool === undefined) {
    t.fail('promtool is not on PATH: install it (Debian/Ubuntu: apt-get install -y prometheus) or set SIDEKEY_SKIP_PROMTOOL=1 to skip')
    return
  }
  const check = await run(promtool, ['check', 'rules', 'alerts.yaml'])
  t.equal(check.code, 0, check.output)
  t.match(check.output, /SUCCESS: \d+ rules found/)
  const test = await run(promtool, ['test', 'rules', 'alerts.test.yaml'])
  t.equal(test.code, 0, test.output)
  t.match(test.output, /SUCCESS/)
})
