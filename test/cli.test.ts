import t from 'tap'
import { spawn, execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { request } from 'undici'

/** The built CLI, as a user runs it (`npm test` builds first). */
const CLI = resolve('dist/cli.js')
const run = promisify(execFile)
const dir = mkdtempSync(join(tmpdir(), 'sidekey-cli-'))

function configFile (name: string, body: string): string {
  const file = join(dir, name)
  writeFileSync(file, body)
  return file
}

const good = configFile('good.yaml', `
instance_id: cli-test
ca: { dir: ${join(dir, 'ca')} }
resolve: { echo.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  echo: { match: { host: echo.tool.test, port: 8088 }, issuer: local, plaintext: true }
`)
const bad = configFile('bad.yaml', `
instance_id: cli-test
issuers: { local: { type: local_jwt, ttl: soon } }
tools:
  echo: { match: { host: echo.tool.test }, issuer: nowhere, colour: blue }
`)

t.test('check: exit 0 when valid; exit 2 with FILE:LINE:COL per problem', async (t) => {
  const ok = await run(process.execPath, [CLI, 'check', '--config', good])
  t.match(ok.stdout, /ok/)
  const err = await run(process.execPath, [CLI, 'check', '--config', bad]).then(() => undefined, (e: { code: number, stdout: string }) => e)
  t.equal(err?.code, 2)
  const lines = err!.stdout.trim().split('\n')
  t.ok(lines.length >= 3, 'every problem, not just the first')
  for (const line of lines) t.match(line, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `))
  t.ok(lines.some((l) => l.includes('tools.echo.issuer')))
  t.ok(lines.some((l) => l.includes('colour')))
})

t.test('--version prints the version; an unknown command says so and lists the commands (exit 2)', async (t) => {
  const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }
  const { stdout } = await run(process.execPath, [CLI, '--version'])
  t.equal(stdout, `sidekey ${version}\n`)
  const err = await run(process.execPath, [CLI, 'chekc', '--config', good]).then(() => undefined, (e: { code: number, stderr: string }) => e)
  t.equal(err?.code, 2)
  t.match(err?.stderr, /^sidekey: unknown command "chekc"; the commands are run, check, ca, audit, schema, fleet/)
})

t.test('run with a bad config exits non-zero with the same messages and no stack trace', async (t) => {
  const err = await run(process.execPath, [CLI, 'run', '--config', bad]).then(() => undefined, (e: { code: number, stderr: string }) => e)
  t.equal(err?.code, 2)
  t.match(err!.stderr, /bad\.yaml:\d+:\d+: /)
  t.notMatch(err!.stderr, /\n\s+at /, 'no stack trace')
})

t.test('ca prints the certificate path; --bundle writes system roots plus the CA', async (t) => {
  const bundle = join(dir, 'bundle.pem')
  const { stdout } = await run(process.execPath, [CLI, 'ca', '--config', good, '--bundle', bundle])
  const caPath = stdout.split('\n')[0]!
  t.match(stdout, `bundle: ${bundle} (roots from `)
  const ca = readFileSync(caPath, 'utf8')
  t.match(ca, /BEGIN CERTIFICATE/)
  const b = readFileSync(bundle, 'utf8')
  t.ok(b.includes(ca.trim()), 'the bundle holds the CA')
  t.ok((b.match(/BEGIN CERTIFICATE/g) ?? []).length > 10, 'and the system roots')
})

t.test('run: listening line with bound ports, SIGHUP with a bad config keeps serving, SIGTERM drains and exits 0', async (t) => {
  const file = configFile('live.yaml', readFileSync(good, 'utf8'))
  const child = spawn(process.execPath, [CLI, '--config', file, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const lines: Array<Record<string, unknown>> = []
  const waiters: Array<{ test: (l: Record<string, unknown>) => boolean, resolve: (l: Record<string, unknown>) => void }> = []
  createInterface({ input: child.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>
    lines.push(line)
    for (const w of waiters.splice(0)) { if (w.test(line)) w.resolve(line); else waiters.push(w) }
  })
  const next = (test: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> =>
    new Promise((resolve) => { const found = lines.find(test); if (found !== undefined) resolve(found); else waiters.push({ test, resolve }) })

  const listening = await next((l) => l.msg === 'listening')
  t.match(listening, { proxy: /^127\.0\.0\.1:\d+$/, admin: /^127\.0\.0\.1:\d+$/ })
  t.not(listening.proxy, '127.0.0.1:0')
  const ready = await request(`http://${String(listening.admin)}/readyz`)
  t.equal(ready.statusCode, 200)
  await ready.body.dump()

  writeFileSync(file, readFileSync(bad, 'utf8'))
  child.kill('SIGHUP')
  const refused = await next((l) => String(l.msg).includes('reload refused'))
  t.ok(refused, 'the bad config is refused and logged')
  const still = await request(`http://${String(listening.admin)}/readyz`)
  t.equal(still.statusCode, 200, 'the old config keeps serving')
  await still.body.dump()

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit') as [number]
  t.equal(code, 0)
})
