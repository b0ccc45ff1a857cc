import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../src/config/load.js'
import { rejectionOf } from '../config/helpers.js'

const base = (fleet: string): string => `instance_id: t
issuers: { local: { type: local_jwt }, idp: { type: oauth2_client_credentials, token_url: https://idp.test/token, client_id: c, client_secret: s, revocation_url: http://idp.test/revoke } }
tools:
  api: { match: { host: api.test }, issuer: local }
${fleet}`

t.test('fleet: defaults, and every mistake named with its position', async (t) => {
  const ok = parseConfig('instance_id: t\nissuers: { local: { type: local_jwt } }\ntools: {}\nfleet:\n  nats: { servers: [nats://n:4222], creds_file: /c }\n  operator_keys: /k\n', 'ok.yaml', {})
  t.match(ok.fleet, { bucket: 'sidekey', required: false, heartbeat: 10_000, operator_keys: '/k', nats: { servers: ['nats://n:4222'], creds_file: '/c' } })
  t.equal(parseConfig('instance_id: t\nissuers: {}\ntools: {}\n', 'none.yaml', {}).fleet, undefined, 'optional: absent means no broker')

  const { lines } = await rejectionOf(() => parseConfig(base(`fleet:
  nats: { servers: [nats://n:4222], token_file: /t, creds_file: /c, colour: blue }
  operator_keys: /k
  bucket: "a.b"
`), 'bad.yaml', {}))
  t.match(lines.join('\n'), /bad\.yaml:6:\d+: .*colour/)
  t.match(lines.join('\n'), /bad\.yaml:8:\d+: .*bucket names use letters/)
  t.match(lines.join('\n'), /revocation_url.*plain http:\/\//, 'revocation_url gets the token_url rule: no plain http off this machine')

  const auth = await rejectionOf(() => parseConfig(base(`fleet:
  nats: { servers: [nats://n:4222], token_file: /t, creds_file: /c, tls: { cert_file: /x } }
  operator_keys: /k
`).replace('http://idp.test/revoke', 'https://idp.test/revoke'), 'auth.yaml', {}))
  t.match(auth.lines.join('\n'), /one of token_file, user \+ password_file, creds_file/)
  t.match(auth.lines.join('\n'), /cert_file and tls.key_file go together/)
  const user = await rejectionOf(() => parseConfig(base('fleet: { nats: { servers: [nats://n], user: u }, operator_keys: /k }').replace('http://', 'https://'), 'user.yaml', {}))
  t.match(user.lines.join('\n'), /user and nats.password_file go together/)
  const missing = await rejectionOf(() => parseConfig(base('fleet: { nats: { servers: [] } }').replace('http://', 'https://'), 'missing.yaml', {}))
  t.match(missing.lines.join('\n'), /operator_keys/)
})

t.test('a config without fleet: never loads the NATS client', async (t) => {
  // A loader hook in a child process records every module resolved while the compiled sidekey (build/, which
  // `npm test` builds first) starts and stops with the repository's default config.
  const root = fileURLToPath(new URL('../../', import.meta.url))
  const script = `
    import { register } from 'node:module'
    const seen = []
    const { port1, port2 } = new MessageChannel()
    port1.on('message', (m) => seen.push(m)); port1.unref()
    register('data:text/javascript,' + encodeURIComponent(\`
      let port; export function initialize (d) { port = d.port }
      export async function resolve (s, c, next) { const r = await next(s, c); port.postMessage(r.url); return r }\`), { parentURL: import.meta.url, data: { port: port2 }, transferList: [port2] })
    const { Sidekey } = await import('./build/app.js')
    const { parseConfig } = await import('./build/config/load.js')
    const { createLogger } = await import('./build/audit/log.js')
    const fs = await import('node:fs'); const os = await import('node:os'); const path = await import('node:path')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sidekey-lazy-'))
    const config = parseConfig(fs.readFileSync('config/sidekey.yaml', 'utf8').replace('./data/ca', path.join(dir, 'ca')), 'sidekey.yaml', {})
    const app = await Sidekey.start({ config, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: createLogger({ level: 'silent' }) })
    await app.close()
    await new Promise((r) => setTimeout(r, 50))
    console.log(JSON.stringify(seen.filter((u) => u.includes('@nats-io') || u.includes('/build/fleet/'))))
    console.log('modules ' + seen.length)
  `
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  t.equal(r.status, 0, r.stderr)
  const [nats, count] = r.stdout.trim().split('\n')
  t.same(JSON.parse(nats!), [], 'no NATS or fleet module was resolved')
  t.match(count, /^modules \d{2,}/, 'the hook saw sidekey\'s own modules')
})
