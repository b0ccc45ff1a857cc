import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SidekeyError } from '../../src/errors.js'
import { ConfigError, formatProblems, loadConfigFile, parseConfig } from '../../src/config/load.js'
import { defaultConfigFile, minimal, rejectionOf } from './helpers.js'

t.test('the default config loads with no external service and no environment', async (t) => {
  const cfg = await loadConfigFile(defaultConfigFile, {})
  t.equal(cfg.instance_id, 'sidekey-local')
  t.equal(cfg.listen, '127.0.0.1:4750')
  t.equal(cfg.admin.listen, '127.0.0.1:4751')
  t.equal(cfg.ca.dir, './data/ca')
  t.equal(cfg.egress.unmatched, 'deny')
  t.same(cfg.resolve, { 'echo.sidekey.test': '127.0.0.1' })
  t.same(cfg.issuers.local, { type: 'local_jwt', alg: 'ES256', ttl: 600_000, rotate_every: 86_400_000, overlap: 3_600_000, issuer: 'https://sidekey.local' })
  const echo = cfg.tools.echo
  t.ok(echo)
  t.same(echo?.match, { host: 'echo.sidekey.test', port: 8088 })
  t.equal(echo?.issuer, 'local')
  t.same(echo?.scopes, ['demo:read'])
  t.equal(echo?.audience, 'https://echo.sidekey.test')
  t.same(echo?.inject, { header: 'Authorization', format: 'Bearer {token}' })
  t.same(echo?.strip, ['Authorization'])
  t.equal(echo?.placeholder, 'sidekey')
  t.equal(echo?.plaintext, true)
})

t.test('the default config takes instance_id from SIDEKEY_INSTANCE_ID, then HOSTNAME', async (t) => {
  t.equal((await loadConfigFile(defaultConfigFile, { HOSTNAME: 'box-1' })).instance_id, 'box-1')
  t.equal((await loadConfigFile(defaultConfigFile, { HOSTNAME: 'box-1', SIDEKEY_INSTANCE_ID: 'agent-7' })).instance_id, 'agent-7')
})

t.test('env defaults to process.env', async (t) => {
  process.env.SIDEKEY_TEST_INSTANCE = 'from-process-env'
  t.teardown(() => { delete process.env.SIDEKEY_TEST_INSTANCE })
  const cfg = parseConfig('instance_id: ${SIDEKEY_TEST_INSTANCE}\nissuers: {}\ntools: {}\n', 'inline.yaml')
  t.equal(cfg.instance_id, 'from-process-env')
})

t.test('defaults are filled in', async (t) => {
  const cfg = parseConfig(minimal('  api:\n    match: { host: api.example.com }\n    issuer: local\n'), 'inline.yaml', {})
  t.equal(cfg.limits.max_header_bytes, 16384)
  t.equal(cfg.limits.max_headers, 100)
  t.equal(cfg.limits.headers_timeout, 10_000)
  t.equal(cfg.limits.max_connections, 256)
  t.equal(cfg.limits.replay_body_bytes, 1_048_576)
  t.equal(cfg.egress.unmatched, 'deny')
  t.equal(cfg.egress.block_private, true)
  t.equal(cfg.shutdown_grace, 10_000)
  const api = cfg.tools.api
  t.same(api?.inject, { header: 'Authorization', format: 'Bearer {token}' })
  t.same(api?.strip, ['Authorization'], 'strip defaults to the injected header')
  t.same(api?.refresh, { at: 0.5, jitter: 0.1 })
  t.equal(api?.plaintext, false)
})

t.test('strip defaults follow the injection style; an explicit strip is kept', async (t) => {
  const cfg = parseConfig(minimal([
    '  hdr:', '    match: { host: a.example.com }', '    issuer: local', '    inject: { header: X-Api-Key }',
    '  basic:', '    match: { host: b.example.com }', '    issuer: local', '    inject: { basic: { username: bot } }',
    '  query:', '    match: { host: c.example.com }', '    issuer: local', '    inject: { query: api_key }',
    '  explicit:', '    match: { host: d.example.com }', '    issuer: local', '    strip: [Authorization, X-Api-Key]', '',
  ].join('\n')), 'inline.yaml', {})
  t.same(cfg.tools.hdr?.strip, ['X-Api-Key'])
  t.same(cfg.tools.basic?.strip, ['Authorization'])
  t.same(cfg.tools.query?.strip, [])
  t.same(cfg.tools.explicit?.strip, ['Authorization', 'X-Api-Key'])
})

t.test('hosts are normalised: lower case, one trailing dot removed, IPv6 without brackets', async (t) => {
  const cfg = parseConfig(minimal([
    '  a:', '    match: { host: API.Example.COM. }', '    issuer: local',
    '  b:', '    match: { host: "*.Corp.Example.com" }', '    issuer: local',
    '  c:', '    match: { host: "[2606:4700::1111]" }', '    issuer: local',
    '  d:', '    match: { host: 93.184.216.34 }', '    issuer: local', '',
  ].join('\n'), 'resolve:\n  Echo.Local.Test.: 127.0.0.1\n'), 'inline.yaml', {})
  t.equal(cfg.tools.a?.match.host, 'api.example.com')
  t.equal(cfg.tools.b?.match.host, '*.corp.example.com')
  t.equal(cfg.tools.c?.match.host, '2606:4700::1111', 'a public IP literal is allowed')
  t.equal(cfg.tools.d?.match.host, '93.184.216.34')
  t.same(cfg.resolve, { 'echo.local.test': '127.0.0.1' })
})

t.test('the result is deep-frozen', async (t) => {
  const cfg = await loadConfigFile(defaultConfigFile, {})
  for (const v of [cfg, cfg.limits, cfg.resolve, cfg.issuers, cfg.issuers.local, cfg.tools, cfg.tools.echo, cfg.tools.echo?.match,
    cfg.tools.echo?.scopes, cfg.tools.echo?.strip, cfg.tools.echo?.inject]) {
    t.ok(Object.isFrozen(v))
  }
  t.throws(() => { (cfg as { listen: string }).listen = '0.0.0.0:1' }, TypeError)
  t.throws(() => { (cfg.tools.echo?.scopes as string[]).push('admin') }, TypeError)
})

t.test('all problems are reported at once, in file order, as a typed ConfigError', async (t) => {
  const text = [
    'instance_id: t', 'bogus: 1', 'issuers:', '  local:', '    type: local_jwt', '    ttl: soon',
    'tools:', '  api:', '    match: { host: "*", port: 0 }', '    issuer: nope', '',
  ].join('\n')
  const { error, lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
  t.ok(error instanceof SidekeyError)
  t.equal(error.code, 'SIDEKEY_CONFIG_INVALID')
  t.same(lines.map((l) => l.split(': ')[0]), ['x.yaml:2:1', 'x.yaml:6:10', 'x.yaml:9:20', 'x.yaml:9:31', 'x.yaml:10:13'])
  t.match(lines[0], /^x\.yaml:2:1: bogus: unknown key \(expected one of: instance_id, listen,/)
  t.match(lines[3], /^x\.yaml:9:31: tools\.api\.match\.port: too small/)
  t.ok(Object.isFrozen(error.problems))
  t.match(error.message, /5 config problems/)
  t.same(error.problems[4], { file: 'x.yaml', line: 10, col: 13, path: 'tools.api.issuer', message: 'tools.api.issuer: unknown issuer "nope" (issuers defined: local)' })
  t.same(formatProblems(error.problems), lines)
})

t.test('unknown keys inside an issuer are checked against that issuer type', async (t) => {
  const text = 'instance_id: t\nissuers:\n  corp:\n    type: oauth2_client_credentials\n    token_url: https://idp.example.com/t\n' +
    '    clientid: a\n    client_secret_file: /s\n  local:\n    type: local_jwt\n    rotate: 1h\ntools: {}\n'
  const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:3:3: issuers.corp.client_id: required key is missing',
    'x.yaml:6:5: issuers.corp.clientid: unknown key (did you mean "client_id"?)',
    'x.yaml:10:5: issuers.local.rotate: unknown key (expected one of: type, alg, ttl, rotate_every, overlap, issuer)',
  ])
})

t.test('a byte-order mark and CRLF line ends are accepted', async (t) => {
  const cfg = parseConfig('\uFEFFinstance_id: t\r\nissuers: {}\r\ntools: {}\r\n', 'x.yaml', {})
  t.equal(cfg.instance_id, 't')
})

t.test('a missing required key is reported at its parent', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig('issuers:\n  corp:\n    type: oauth2_client_credentials\n' +
    '    token_url: https://idp.example.com/t\n    client_secret_file: /s\ntools: {}\n', 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:1:1: instance_id: required key is missing',
    'x.yaml:2:3: issuers.corp.client_id: required key is missing',
  ])
})

t.test('record keys, issuer types and client auth are checked', async (t) => {
  const text = [
    'instance_id: t', 'issuers:', '  "bad name":', '    type: local_jwt',
    '  x:', '    type: vault',
    '  jwt:', '    type: oauth2_client_credentials', '    token_url: https://idp.example.com/t', '    client_id: a', '    auth_method: private_key_jwt',
    '  sts:', '    type: oauth2_token_exchange', '    token_url: https://sts.example.com/t', '    subject_token_file: /t', '    auth_method: client_secret_basic', '    client_secret_file: /s',
    'tools: {}', '',
  ].join('\n')
  const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:3:3: issuers["bad name"]: issuer names use letters, digits, _ . -',
    'x.yaml:6:11: issuers.x.type: unknown type "vault"; expected one of local_jwt, oauth2_client_credentials, oauth2_token_exchange, file, exec',
    'x.yaml:11:18: issuers.jwt.auth_method: auth_method private_key_jwt needs private_key_file',
    'x.yaml:16:18: issuers.sts.auth_method: auth_method client_secret_basic needs client_id',
  ])
})

t.test('host forms that could send a credential somewhere unintended are refused', async (t) => {
  const hosts: Array<[string, RegExp]> = [
    ['"*.com"', /top-level domain/],
    ['"api.*.example.com"', /only a leading "\*\." wildcard/],
    ['https://api.example.com', /without a scheme/],
    ['api.example.com/v1', /no path; put it in match\.path_prefix/],
    ['user@api.example.com', /no user info/],
    ['api.example.com:443', /no port; put it in match\.port/],
    ['"127.1"', /partial IP address/],
    ['"0x7f.0.0.1"', /partial IP address/],
    ['"[::1]"', /is a loopback address/],
    ['10.0.0.8', /is a private address/],
    ['"::ffff:127.0.0.1"', /is a loopback address/],
    ['fe80--1.example.com', /not a valid host name|^$/],
    ['bad_host.example.com', /not a valid host name/],
  ]
  for (const [host, message] of hosts) {
    const text = minimal(`  api:\n    match:\n      host: ${host}\n    issuer: local\n`)
    if (host === 'fe80--1.example.com') { t.ok(parseConfig(text, 'x.yaml', {}), 'an ordinary name with dashes is fine'); continue }
    const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
    t.equal(lines.length, 1, host)
    t.match(lines[0], /^x\.yaml:8:13: tools\.api\.match\.host: /)
    t.match(lines[0], message, host)
  }
})

t.test('a path_prefix must be in the normal form requests are matched in', async (t) => {
  const prefixes: Array<[string, RegExp]> = [
    ['/v1/%73afe/', /write it as "\/v1\/safe\/"/],
    ['/v1/safe/../admin/', /write it as "\/v1\/admin\/"/],
    ['/v1/a%2fb/', /write it as "\/v1\/a%2Fb\/"/],
    ['"/v1/a\\b/"', /no query, fragment, backslash/],
    ['/v1/?x=1', /no query, fragment, backslash/],
    ['/v1/%c0%af/', /no query, fragment, backslash, control bytes or bad escapes/],
  ]
  for (const [prefix, message] of prefixes) {
    const text = minimal(`  api:\n    match:\n      host: api.example.com\n      path_prefix: ${prefix}\n    issuer: local\n`)
    const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
    t.equal(lines.length, 1, prefix)
    t.match(lines[0], /^x\.yaml:9:\d+: tools\.api\.match\.path_prefix: path_prefix /)
    t.match(lines[0], message, prefix)
  }
  t.ok(parseConfig(minimal('  api:\n    match:\n      host: api.example.com\n      path_prefix: /v1/caf%C3%A9/x;y/\n    issuer: local\n'), 'x.yaml', {}), 'a normal prefix loads')
})

t.test('resolve keys must be host names and values IP literals; a loopback pin allows plaintext', async (t) => {
  const tools = '  api:\n    match: { host: api.local.test, port: 8080 }\n    issuer: local\n    plaintext: true\n'
  const ok = parseConfig(minimal(tools, 'resolve:\n  api.local.test: "::1"\n'), 'x.yaml', {})
  t.equal(ok.tools.api?.plaintext, true)
  const { lines } = await rejectionOf(() => parseConfig(minimal(tools,
    'resolve:\n  api.local.test: localhost\n  10.0.0.1: 10.0.0.1\n  API.local.test.: 127.0.0.1\n'), 'x.yaml', {}))
  t.same(lines, [
    'x.yaml:3:19: resolve["api.local.test"]: "localhost" is not an IP address (resolve: pins host names to addresses, like curl --resolve)',
    'x.yaml:4:3: resolve["10.0.0.1"]: pin a host name here, not an address',
    'x.yaml:5:3: resolve["API.local.test."]: api.local.test is pinned twice',
    'x.yaml:13:16: tools.api.plaintext: plaintext: true would send the credential over the network in clear; it is only ' +
      'allowed when match.host is pinned to a loopback address in resolve: (e.g. resolve: { api.local.test: 127.0.0.1 })',
  ])
})

t.test('a wildcard tool can never be plaintext', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig(minimal('  api:\n    match: { host: "*.local.test" }\n    issuer: local\n    plaintext: true\n',
    'resolve:\n  a.local.test: 127.0.0.1\n'), 'x.yaml', {}))
  t.equal(lines.length, 1)
  t.match(lines[0], /^x\.yaml:11:16: tools\.api\.plaintext: plaintext: true would send .* in clear; .*a wildcard cannot be pinned/)
})

t.test('same host on different ports or path prefixes is not a duplicate', async (t) => {
  const cfg = parseConfig(minimal([
    '  a:', '    match: { host: api.example.com }', '    issuer: local',
    '  b:', '    match: { host: api.example.com, port: 8443 }', '    issuer: local',
    '  c:', '    match: { host: api.example.com, path_prefix: /admin/ }', '    issuer: local', '',
  ].join('\n')), 'x.yaml', {})
  t.same(Object.keys(cfg.tools), ['a', 'b', 'c'])
  const { lines } = await rejectionOf(() => parseConfig(minimal([
    '  a:', '    match: { host: api.example.com }', '    issuer: local',
    '  b:', '    match: { host: api.example.com, path_prefix: / }', '    issuer: local', '',
  ].join('\n')), 'x.yaml', {}))
  t.match(lines, [/^x\.yaml:10:20: tools\.b\.match\.host: tool "a" already matches/])
})

t.test('an unreadable file is a ConfigError at 1:1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-config-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const missing = join(dir, 'nope.yaml')
  t.same((await rejectionOf(() => loadConfigFile(missing, {}))).lines, [`${missing}:1:1: cannot read the config file (ENOENT: no such file)`])
  t.same((await rejectionOf(() => loadConfigFile(dir, {}))).lines, [`${dir}:1:1: cannot read the config file (EISDIR: it is a directory)`])
  const huge = join(dir, 'huge.yaml')
  await writeFile(huge, `instance_id: t\n#${'x'.repeat(1024 * 1024)}\n`)
  t.match((await rejectionOf(() => loadConfigFile(huge, {}))).lines, [/^.*huge\.yaml:1:1: the file is larger than 1048576 bytes$/])
})

t.test('odd YAML is refused with a position instead of crashing or hanging', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /^x\.yaml:1:1: expected object, received null$/],
    ['- a\n- b\n', /^x\.yaml:1:1: expected object, received array$/],
    ['instance_id: t\n---\ntools: {}\n', /^x\.yaml:2:1: YAML: a config file holds one YAML document/],
    ['instance_id: *nothing\n', /^x\.yaml:1:14: instance_id: YAML: unknown alias \*nothing$/m],
    ['instance_id: t\n\tissuers: {}\n', /^x\.yaml:2:1: YAML: /],
    ['instance_id: !vault t\nissuers: {}\ntools: {}\n', /^x\.yaml:1:14: YAML: unresolved tag: !vault$/],
    ['? [a, b]\n: c\n', /^x\.yaml:1:3: YAML: keys must be plain strings$/m],
  ]
  for (const [text, line] of cases) {
    const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
    t.match(lines.join('\n'), line, JSON.stringify(text))
  }
  // A "billion laughs" alias bomb is cut off instead of expanding.
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
  for (let i = 1; i < 9; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`)
  const { lines } = await rejectionOf(() => parseConfig(bomb.join('\n') + '\n', 'x.yaml', {}))
  t.match(lines.join('\n'), /too large or too deep/)
  // An alias that contains itself is refused.
  t.match((await rejectionOf(() => parseConfig('anomaly: &a { x: *a }\n', 'x.yaml', {}))).lines.join('\n'), /refers to a value that contains it/)
})

t.test('a __proto__ key is an unknown key, not a prototype', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig(minimal('  api:\n    match: { host: a.example.com }\n    issuer: local\n    __proto__: { plaintext: true }\n'), 'x.yaml', {}))
  t.match(lines, [/^x\.yaml:9:5: tools\.api\.__proto__: unknown key/])
})

t.test('aliases work, and problems inside them point at their use', async (t) => {
  const cfg = parseConfig(minimal([
    '  a:', '    match: { host: a.example.com }', '    issuer: local', '    scopes: &read [repo:read]',
    '  b:', '    match: { host: b.example.com }', '    issuer: local', '    scopes: *read', '',
  ].join('\n')), 'x.yaml', {})
  t.same(cfg.tools.b?.scopes, ['repo:read'])
  const { lines } = await rejectionOf(() => parseConfig(minimal([
    '  a:', '    match: { host: a.example.com }', '    issuer: &who nobody',
    '  b:', '    match: { host: b.example.com }', '    issuer: *who', '',
  ].join('\n')), 'x.yaml', {}))
  t.same(lines.map((l) => l.split(': ')[0]), ['x.yaml:8:18', 'x.yaml:11:13'], 'the anchored value, and the alias where it is used')
})

t.test('ConfigError can be built directly for callers that find problems of their own', async (t) => {
  const err = new ConfigError('f.yaml', [{ file: 'f.yaml', line: 3, col: 4, path: '', message: 'whole-file problem' }])
  t.equal(err.message, 'f.yaml: 1 config problem\nf.yaml:3:4: whole-file problem')
  t.equal(err.name, 'ConfigError')
})

t.test('one YAML mistake is one problem, at the column where the mistaken line starts', async (t) => {
  const text = 'instance_id: t\nissuers: {}\ntools:\n  x:\n    match: { host: a.test }\n   issuer: a\n    inject: { header: authorization }\n'
  const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', {}))
  t.same(lines, ['x.yaml:6:4: YAML: all mapping items must start at the same column'])
})

t.test('a listen value that is not HOST:PORT is one problem, not three', async (t) => {
  const { lines } = await rejectionOf(() => parseConfig('instance_id: t\nlisten: nope\nissuers: {}\ntools: {}\n', 'x.yaml', {}))
  t.same(lines, ['x.yaml:2:9: listen: expected HOST:PORT'])
  const port = await rejectionOf(() => parseConfig('instance_id: t\nlisten: 127.0.0.1:70000\nissuers: {}\ntools: {}\n', 'x.yaml', {}))
  t.same(port.lines, ['x.yaml:2:9: listen: port must be 0-65535'])
})
