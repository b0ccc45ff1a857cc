// `npm test`'s last step: the tap suite, and one closing line that says why it failed.
// The coverage thresholds (package.json "tap") are enforced where every test runs: under CI, which installs every
// system peer the suite drives. Elsewhere tests that need a missing peer skip (naming the Debian package), so the
// same thresholds would fail a newcomer's clean run for code that was simply not exercised: the table is printed,
// the thresholds are not enforced.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

const ci = process.env.CI === 'true' || process.env.CI === '1'
const args = [...process.argv.slice(2), ...(ci ? [] : ['--allow-incomplete-coverage'])]
const tap = spawn(process.execPath, [new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url).pathname, ...args], {
  stdio: ['inherit', 'pipe', 'inherit'],
})
let tail = ''
tap.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  tail = (tail + chunk.toString()).slice(-64 * 1024)
})
tap.on('close', (code) => {
  if (code !== 0) {
    const text = tail.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g'), '')
    const failed = [...new Set([...text.matchAll(/^\s*(?:FAIL|not ok \d+ -)\s+(test\/\S+)/gm)].map((m) => m[1]))]
    const why = failed.length > 0 ? `failing test files: ${failed.join(', ')}` : underThresholds(text) ?? `tap exited ${code} (see above)`
    process.stdout.write(`\nnpm test failed: ${why}\n`)
  }
  process.exitCode = code ?? 1
})

/** Which of package.json's coverage thresholds the "All files" row of tap's table falls under, in words. */
function underThresholds (text) {
  const row = /^All files\s*\|([^\n]*)/m.exec(text)
  if (row === null) return undefined
  const [statements, branches, functions, lines] = row[1].split('|').map((c) => Number(c.trim()))
  const wanted = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).tap
  const got = { statements, branches, functions, lines }
  const under = Object.entries(got).filter(([k, v]) => typeof wanted[k] === 'number' && v < wanted[k])
  if (under.length === 0) return undefined
  return `coverage under the thresholds: ${under.map(([k, v]) => `${k} ${v} % < ${wanted[k]} %`).join(', ')}`
}
