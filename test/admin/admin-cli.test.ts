import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startUpstream } from '../helpers/upstream.js'
import { LogCapture } from '../helpers/sidekey.js'
import { cli } from '../helpers/cli.js'
import { Sidekey } from '../../src/app.js'
import { createLogger } from '../../src/audit/log.js'
import { ManualClock } from '../audit/helpers.js'

/** `sidekey admin` finds the token sidekey made beside the CA by itself: nobody copies it by hand. */

const up = await startUpstream()
t.teardown(() => up.close())
const dir = mkdtempSync(join(tmpdir(), 'sidekey-admin-cli-'))
const file = join(dir, 'sidekey.yaml')
writeFileSync(file, `
instance_id: admin-cli-test
ca: { dir: ${join(dir, 'ca')} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt, ttl: 10m } }
tools: { api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true } }
`)
const log = new LogCapture()
// Time stands still, so the second rotation falls inside the 10 s however slowly the CLI starts.
const clock = new ManualClock(Date.now())
const app = await Sidekey.start({ clock, configFile: file, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: createLogger({ level: 'info', destination: log }), env: {} })
t.teardown(() => app.close())
const token = readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim()
const admin = (...args: string[]) => cli(['admin', ...args, '--config', file, '--admin', app.adminAddress])

t.test('rotate and reload with the generated token; a second rotation is refused with its wait; status needs none', async (t) => {
  const before = app.credentials.status().api!.credential_id
  const [rotated, reloaded] = await Promise.all([admin('rotate', 'api', '--revoke-previous'), admin('reload')])
  t.equal(rotated.code, 0, rotated.stderr)
  const body = JSON.parse(rotated.stdout) as { tool: string, credential_id: string }
  t.equal(body.tool, 'api')
  t.not(body.credential_id, before, 'a new credential')
  t.equal(reloaded.code, 0, reloaded.stderr)
  t.same(JSON.parse(reloaded.stdout), { reloaded: true })
  const [again, status] = await Promise.all([admin('rotate', 'api'), admin('status')])
  t.equal(again.code, 1)
  t.match(again.stderr, /\/rotate\/api answered 429 \(retry after \d+ s\): .*rotate_rate_limited/)
  t.equal(status.code, 0, status.stderr)
  t.match(JSON.parse(status.stdout), { tools: { api: { credential_id: body.credential_id } } })
  t.equal(log.events('admin.denied').length, 1, 'only the rate-limited rotation was refused')
  t.notOk([rotated, reloaded, again, status].some((r) => (r.stdout + r.stderr).includes(token)), 'the CLI never prints the token')
})
