import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { Agent } from 'undici'
import { parseConfig } from '../../src/config/load.js'
import { isLoopbackHost } from '../../src/config/host.js'
import type { LocalJwtIssuerConfig } from '../../src/config/schema.js'
import { createLocalJwtIssuer } from '../../src/credentials/issuers/local-jwt.js'
import { FakeClock } from '../credentials/fake-clock.js'
import { rejectionOf } from './helpers.js'
import { cli } from '../helpers/cli.js'

/** One client-credentials issuer per line, so a problem's line names the case. */
const ccIssuer = (name: string, url: string): string =>
  `  ${name}: { type: oauth2_client_credentials, token_url: "${url}", client_id: a, client_secret_file: /run/secrets/idp }\n`

const configWith = (issuers: string, head = ''): string => `instance_id: t\n${head}issuers:\n${issuers}tools: {}\n`

t.test('token_url: plain http:// to a host that is not surely this machine is a config error at the value', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig([
    'instance_id: t',
    'issuers:',
    '  idp:',
    '    type: oauth2_client_credentials',
    '    token_url: http://idp.example.com/token',
    '    client_id: a',
    '    client_secret_file: /run/secrets/idp',
    'tools: {}',
  ].join('\n'), 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:5:16: issuers.idp.token_url: plain http:// to "idp.example.com" would send this issuer\'s client credentials and tokens over ' +
      'the network in clear; use https://, or for an issuer on this machine a loopback address (http://127.0.0.1:PORT/...) or a host ' +
      'name pinned to one in resolve: (e.g. resolve: { idp.example.com: 127.0.0.1 })',
  ])
})

t.test('token_url: the same rule for oauth2_token_exchange (the subject token would travel in clear)', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig([
    'instance_id: t',
    'issuers:',
    '  sts:',
    '    type: oauth2_token_exchange',
    '    subject_token_file: /var/run/secrets/tokens/agent',
    '    token_url: http://10.0.0.8:8080/token',
    'tools: {}',
  ].join('\n'), 'x.yaml', {}))
  t.equal(lines.length, 1)
  t.match(lines[0], /^x\.yaml:6:16: issuers\.sts\.token_url: plain http:\/\/ to "10\.0\.0\.8" would send .* in clear; use https:\/\//)
  t.match(lines[0], /resolve: \{ idp\.internal\.test: 127\.0\.0\.1 \}/, 'an address cannot be pinned: the example pins a name')
})

t.test('token_url: every non-loopback http:// destination is refused, one problem each, at its own line', async (t) => {
  const urls = [
    'http://idp.corp.test:8080/token', // pinned below, but to a private address
    'http://unpinned.test/token',
    'http://10.0.0.1/token',
    'http://[fd00::1]:8080/token',
    'http://169.254.169.254/token',
    'http://0.0.0.0:8080/token', // unspecified is not loopback
    'http://127.0.0.1.nip.io/token', // a name, whatever it looks like
    'http://[::ffff:10.0.0.1]/token',
  ]
  const text = configWith(urls.map((u, i) => ccIssuer(`i${i}`, u)).join(''), 'resolve: { idp.corp.test: 10.0.0.5 }\n')
  const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
  t.equal(lines.length, urls.length, lines.join('\n'))
  const source = text.split('\n')
  urls.forEach((url, i) => {
    const line = source.findIndex((l) => l.includes(`"${url}"`)) + 1
    const col = (source[line - 1] ?? '').indexOf(`"${url}"`) + 1
    t.ok(lines.some((l) => l.startsWith(`x.yaml:${line}:${col}: issuers.i${i}.token_url: plain http:// `)), url)
  })
})

t.test('token_url: an unpinned localhost is refused with the fix (pin it, or write 127.0.0.1)', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig(configWith(ccIssuer('idp', 'http://localhost:9000/token')), 'x.yaml', {}))
  t.equal(lines.length, 1)
  t.match(lines[0], /^x\.yaml:3:54: issuers\.idp\.token_url: plain http:\/\/ carries .* in clear.*"localhost" unpinned .*egress\.block_private/)
  t.match(lines[0], /write http:\/\/127\.0\.0\.1:PORT\/\.\.\. or pin it \(e\.g\. resolve: \{ localhost: 127\.0\.0\.1 \}\)/)
})

t.test('token_url: a host from the environment is not shown in the message', async (t) => {
  const canary = 'idp-canary-7f3a.example.com'
  const { lines } = await rejectionOf(() => parseConfig(configWith(ccIssuer('idp', 'http://${IDP_HOST}/token')), 'x.yaml', { IDP_HOST: canary }))
  t.equal(lines.length, 1)
  t.match(lines[0], /issuers\.idp\.token_url: plain http:\/\/ to \[hidden value\] would send/)
  t.match(lines[0], /resolve: \{ idp\.internal\.test: 127\.0\.0\.1 \}/)
  t.notMatch(lines.join('\n'), /canary/)
})

t.test('token_url: loopback addresses, names pinned to loopback and https:// stay valid', async (t) => {
  const urls = [
    'http://127.0.0.1:8080/token',
    'http://127.9.9.9/token',
    'http://127.1:8080/token', // the URL parser reads this as 127.0.0.1, and so does the connect
    'http://[::1]:8080/token',
    'http://[::ffff:127.0.0.1]:8080/token',
    'http://idp.tool.test:8080/token',
    'http://IDP.Tool.Test.:8080/token', // case and a trailing dot do not escape the pin
    'http://localhost:9000/token', // pinned below
    'https://idp.example.com/token',
    'https://10.0.0.8/token',
  ]
  const cfg = parseConfig(configWith(urls.map((u, i) => ccIssuer(`i${i}`, u)).join(''), 'resolve: { idp.tool.test: 127.0.0.1, localhost: "::1" }\n'), 'x.yaml', {})
  t.equal(Object.keys(cfg.issuers).length, urls.length)
  const exchange = parseConfig(configWith('  sts: { type: oauth2_token_exchange, token_url: "http://127.0.0.1:1/token", subject_token_file: /t }\n'), 'x.yaml', {})
  t.equal(exchange.issuers.sts?.type, 'oauth2_token_exchange')
})

t.test('isLoopbackHost: one rule for plaintext tools and http:// token URLs', async (t) => {
  const pins = new Map([['pinned.test', '127.0.0.1'], ['remote.test', '10.0.0.5'], ['v6.test', '::1']])
  for (const host of ['127.0.0.1', '127.255.0.1', '::1', 'pinned.test', 'v6.test']) t.ok(isLoopbackHost(host, pins), host)
  for (const host of ['10.0.0.1', '0.0.0.0', '::', 'remote.test', 'unpinned.test', 'localhost', '*.pinned.test']) t.notOk(isLoopbackHost(host, pins), host)
})

t.test('local_jwt: rotate_every shorter than ttl or overlap is a config error at rotate_every', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig([
    'instance_id: t',
    'issuers:',
    '  local:',
    '    type: local_jwt',
    '    ttl: 20s',
    '    rotate_every: 6s',
    '    overlap: 4s',
    'tools: {}',
  ].join('\n'), 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:6:19: issuers.local.rotate_every: rotate_every (6s) must be at least ttl (20s) and overlap (4s), so that the JWKS holds ' +
      'only the current and the previous key and every token it signed still verifies',
  ])

  const overlap = await rejectionOf(() => parseConfig(configWith('  local: { type: local_jwt, ttl: 10m, rotate_every: 30m, overlap: 1h }\n'), 'x.yaml', {}))
  t.match(overlap.lines, [/^x\.yaml:3:53: issuers\.local\.rotate_every: rotate_every \(30m\) must be at least ttl \(10m\) and overlap \(1h\)/])
})

t.test('local_jwt: a long ttl with the default rotate_every (24h) is refused at the issuer', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig(configWith('  local:\n    type: local_jwt\n    ttl: 48h\n'), 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:3:3: issuers.local.rotate_every: rotate_every (1d) must be at least ttl (2d) and overlap (1h), so that the JWKS holds ' +
      'only the current and the previous key and every token it signed still verifies',
  ])
})

t.test('local_jwt: a malformed duration is reported once, without a rotate_every complaint on top', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig(configWith('  local: { type: local_jwt, ttl: soon, rotate_every: 1s }\n'), 'x.yaml', {}))
  t.equal(lines.length, 1, lines.join('\n'))
  t.match(lines[0], /issuers\.local\.ttl: invalid duration "soon"/)
})

t.test('local_jwt: rotate_every equal to ttl and overlap, and the defaults, are valid', async (t) => {
  const cfg = parseConfig(configWith([
    '  a: { type: local_jwt }',
    '  b: { type: local_jwt, ttl: 1h, rotate_every: 1h, overlap: 1h }',
    '  c: { type: local_jwt, ttl: 5m, rotate_every: 10m, overlap: 10m }',
    '  d: { type: local_jwt, ttl: 20s, rotate_every: 20s, overlap: 4s }',
  ].join('\n') + '\n'), 'x.yaml', {})
  t.same(Object.keys(cfg.issuers), ['a', 'b', 'c', 'd'])
})

t.test('local_jwt: at the limit (rotate_every = ttl = overlap) the JWKS never lists more than two keys, and tokens verify to expiry', async (t) => {
  const cfg = parseConfig(configWith('  local: { type: local_jwt, ttl: 20s, rotate_every: 20s, overlap: 20s }\n'), 'x.yaml', {})
  const clock = new FakeClock()
  const dispatcher = new Agent()
  const issuer = createLocalJwtIssuer('local', cfg.issuers.local as LocalJwtIssuerConfig, { clock, dispatcher })
  t.teardown(async () => { await issuer.close?.(); await dispatcher.close() })
  const request = { tool: 'api', scopes: [], audience: undefined, instanceId: 'i', signal: new AbortController().signal }
  const kids = new Set<string>()
  let live: Array<{ token: string, expiresAt: number }> = []
  // Five rotations, looked at every quarter period; every token not yet expired must verify at each look.
  for (let step = 0; step < 20; step++) {
    const issued = await issuer.fetch(request) // joins a rotation that is under way
    kids.add(String(decodeProtectedHeader(issued.token.reveal()).kid))
    live.push({ token: issued.token.reveal(), expiresAt: issued.expiresAt ?? 0 })
    await clock.advance(5000)
    live = live.filter((l) => l.expiresAt > clock.now())
    const keys = issuer.jwks?.() ?? []
    t.ok(keys.length <= 2, `step ${step}: ${keys.length} keys`)
    const jwks = createLocalJWKSet({ keys: [...keys] as never })
    const verified = await Promise.all(live.map((l) => jwtVerify(l.token, jwks, { currentDate: new Date(clock.now()) }).then(() => true, () => false)))
    t.ok(verified.every(Boolean), `step ${step}: all ${live.length} live tokens verify`)
  }
  t.ok(kids.size >= 4, `keys rotated (${kids.size} signing keys seen)`)
})

t.test('sidekey check exits 2 on both rules, and run refuses to start; the fixed config checks ok', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-issuer-rules-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, `instance_id: t
ca: { dir: ${join(dir, 'ca')} }
issuers:
  idp:
    type: oauth2_client_credentials
    token_url: http://idp.example.com/token
    client_id: a
    client_secret: s3cret-value-42
  local: { type: local_jwt, ttl: 20s, rotate_every: 6s, overlap: 4s }
tools: {}
`)
  const good = join(dir, 'good.yaml')
  writeFileSync(good, `instance_id: t
ca: { dir: ${join(dir, 'ca')} }
resolve: { idp.tool.test: 127.0.0.1 }
issuers:
  idp: { type: oauth2_client_credentials, token_url: "http://idp.tool.test:8080/token", client_id: a, client_secret: s3cret-value-42 }
  loop: { type: oauth2_client_credentials, token_url: "http://127.0.0.1:8080/token", client_id: a, client_secret: s3cret-value-42 }
  local: { type: local_jwt, ttl: 20s, rotate_every: 20s, overlap: 4s }
tools: {}
`)
  const [check, run, ok] = await Promise.all([
    cli(['check', '--config', bad]),
    cli(['run', '--config', bad, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']),
    cli(['check', '--config', good]),
  ])
  t.equal(check.code, 2, check.stdout + check.stderr)
  t.match(check.stdout, `${bad}:6:16: issuers.idp.token_url: plain http:// to "idp.example.com"`)
  t.match(check.stdout, `${bad}:9:53: issuers.local.rotate_every: rotate_every (6s) must be at least ttl (20s) and overlap (4s)`)
  t.equal(run.code, 2, run.stdout + run.stderr)
  t.match(run.stderr, `${bad}:6:16: issuers.idp.token_url: plain http://`)
  t.notMatch(run.stdout + run.stderr, /listening/, 'nothing was bound')
  t.notMatch(check.stdout + check.stderr + run.stdout + run.stderr, /s3cret-value-42/)
  t.equal(ok.code, 0, ok.stdout + ok.stderr)
  t.match(ok.stdout, `${good}: ok`)
})

t.test('aws_sigv4 needs a file or exec issuer; require_placeholder needs a placeholder; one inject shape only', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig([
    'instance_id: t',
    'issuers:',
    '  local: { type: local_jwt }',
    'tools:',
    '  s3:',
    '    match: { host: s3.example.com }',
    '    issuer: local',
    '    inject: { aws_sigv4: { service: s3, region: us-east-1 } }',
    '    require_placeholder: true',
    '  both:',
    '    match: { host: b.example.com }',
    '    issuer: local',
    '    inject: { header: X-Key, aws_sigv4: { service: S3!, region: us-east-1 } }',
  ].join('\n'), 'x.yaml', {}))
  t.match(lines.join('\n'), /x\.yaml:7:13: tools\.s3\.issuer: inject\.aws_sigv4 signs with an AWS key set, which a local_jwt issuer does not hand out/)
  t.match(lines.join('\n'), /x\.yaml:9:26: tools\.s3\.require_placeholder: require_placeholder: true needs placeholder/)
  t.match(lines.join('\n'), /tools\.both\.inject: inject needs exactly one of header, query, basic or aws_sigv4/)
  t.match(lines.join('\n'), /tools\.both\.inject\.aws_sigv4\.service: an AWS signing name/)
})
