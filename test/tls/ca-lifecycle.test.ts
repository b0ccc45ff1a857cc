import { X509Certificate } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { rootCertificates } from 'node:tls'
import t from 'tap'
import { cli } from '../helpers/cli.js'
import { systemRoots, writeCaBundle } from '../../src/tls/bundle.js'
import { loadOrCreateCa } from '../../src/tls/ca.js'
import { DAY, openssl, tempDir } from './helpers.js'

/** A config for `hosts` whose CA lives in `caDir`; `extra` is appended as top-level YAML. */
function config (caDir: string, hosts: readonly string[], extra = ''): string {
  const tools = hosts.map((h, i) => `  t${i}: { match: { host: ${h} }, issuer: local }`).join('\n')
  return `instance_id: lifecycle\nca: { dir: ${caDir} }\nissuers: { local: { type: local_jwt } }\ntools:\n${tools}\n${extra}`
}

t.test('1, 2. a refused run changes nothing on disk, and check refuses the same config with the same words', async (t) => {
  const dir = await tempDir(t)
  const caDir = join(dir, 'ca')
  const made = join(dir, 'ab.yaml')
  await writeFile(made, config(caDir, ['a.test', 'b.test']))
  t.equal((await cli(['ca', '--config', made])).code, 0)
  const before = await readFile(join(caDir, 'ca.pem'), 'utf8')

  const bad = join(dir, 'bc.yaml')
  await writeFile(bad, config(caDir, ['b.test', 'c.test'], `upstream_ca_file: ${join(dir, 'missing.pem')}\n`))
  const run = await cli(['run', '--config', bad, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'])
  t.equal(run.code, 2)
  t.match(run.stderr, /upstream_ca_file .*missing\.pem cannot be read \(ENOENT\)/)
  t.equal(await readFile(join(caDir, 'ca.pem'), 'utf8'), before, 'run refused: ca.pem untouched')

  const check = await cli(['check', '--config', bad])
  t.equal(check.code, 2, 'check refuses what run refuses')
  // check names the unreadable file at its position in the config, as it does every file the config names.
  t.match(check.stdout, /:\d+:\d+: upstream_ca_file: ".*missing\.pem": no such file/)
  t.equal(await readFile(join(caDir, 'ca.pem'), 'utf8'), before, 'check changed nothing')

  // Other things run refuses before it touches anything: an empty admin token, a file with no certificate, a port
  // out of range.
  const token = join(dir, 'token')
  await writeFile(token, '\n')
  await writeFile(join(dir, 'not.pem'), 'hello\n')
  const more = join(dir, 'more.yaml')
  await writeFile(more, config(join(dir, 'fresh-ca'), ['a.test'], `upstream_ca_file: ${join(dir, 'not.pem')}\nadmin: { token_file: ${token} }\n`))
  const both = await cli(['check', '--config', more])
  t.equal(both.code, 2)
  t.match(both.stderr, /admin\.token_file .*token is empty/)
  t.match(both.stderr, /upstream_ca_file .*not\.pem holds no PEM certificate/)
  const port = join(dir, 'port.yaml')
  await writeFile(port, config(caDir, ['a.test'], 'listen: 127.0.0.1:99999\n'))
  const portCheck = await cli(['check', '--config', port])
  t.equal(portCheck.code, 2)
  t.match(portCheck.stdout, /listen: port must be 0-65535/)
})

t.test('3. an existing CA is replaced by neither ca nor check; ca --rotate replaces it and says what to restart', async (t) => {
  const dir = await tempDir(t)
  const caDir = join(dir, 'ca')
  const ab = join(dir, 'ab.yaml')
  await writeFile(ab, config(caDir, ['a.test', 'b.test']))
  t.equal((await cli(['ca', '--config', ab])).code, 0)
  const before = await readFile(join(caDir, 'ca.pem'), 'utf8')

  const bc = join(dir, 'bc.yaml')
  await writeFile(bc, config(caDir, ['b.test', 'c.test']))
  const b = join(dir, 'b.yaml')
  await writeFile(b, config(caDir, ['b.test']))
  for (const args of [['ca', '--config', bc], ['ca', '--config', b], ['check', '--config', bc]]) {
    const r = await cli(args)
    t.equal(r.code, 0, args.join(' '))
    t.equal(await readFile(join(caDir, 'ca.pem'), 'utf8'), before, `${args.join(' ')}: ca.pem unchanged`)
    if (args[2] === bc) t.match(r.stderr, /warning: tool t1: .*outside the interception CA's name constraints.*sidekey ca --rotate/)
    else t.equal(r.stderr, '', 'a subset of the hosts is covered: no warning')
  }

  const rotated = await cli(['ca', '--config', bc, '--rotate'])
  t.equal(rotated.code, 0, rotated.stderr)
  const after = await readFile(join(caDir, 'ca.pem'), 'utf8')
  t.not(after, before, 'rotate replaced it')
  const fp = (pem: string): string => new X509Certificate(pem).fingerprint256
  t.match(rotated.stdout, `rotated: ${fp(before)} -> ${fp(after)}`)
  t.match(rotated.stdout, 'hosts covered before: a.test, b.test')
  t.match(rotated.stdout, 'hosts covered now: b.test, c.test')
  t.match(rotated.stdout, /restart every running sidekey.*agent that trusted the old CA/)
  t.equal(rotated.stderr, '')
})

t.test('4. the bundle holds the system store (with a root added to it), falls back to Node\'s list, and prints its path', async (t) => {
  const dir = await tempDir(t)
  // A corporate root, added to a temporary system store as update-ca-certificates would.
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'corp-key.pem'),
    '-out', join(dir, 'corp.pem'), '-days', '30', '-subj', '/CN=Corp Proxy Root'])
  const corp = (await readFile(join(dir, 'corp.pem'), 'utf8')).trim()
  const store = join(dir, 'ca-certificates.crt')
  const someRoots = rootCertificates.slice(0, 3)
  const old = await loadOrCreateCa({ dir: join(dir, 'old-ca'), validityMs: 30 * DAY })
  await writeFile(store, [...someRoots, corp, old.certPem.trim()].join('\n') + '\n')

  const roots = await systemRoots({ SSL_CERT_FILE: store })
  t.equal(roots.source, store)
  t.same(roots.pems, [...someRoots, corp], 'the system store, without an older sidekey CA')
  t.equal((await systemRoots({ SSL_CERT_FILE: join(dir, 'none.crt') })).source === join(dir, 'none.crt'), false, 'an unreadable SSL_CERT_FILE is skipped')

  const ca = await loadOrCreateCa({ dir: join(dir, 'ca'), validityMs: 30 * DAY })
  const out = join(dir, 'bundle.pem')
  const written = await writeCaBundle(out, ca.certPem, { SSL_CERT_FILE: store })
  t.same(written, { path: out, source: store })
  const bundle = await readFile(out, 'utf8')
  t.ok(bundle.includes(corp), 'the added root is in the bundle')
  t.ok(bundle.includes(ca.certPem.trim()))
  t.notOk(bundle.includes(old.certPem.trim()))
  t.equal(bundle.match(/BEGIN CERTIFICATE/g)?.length, 5)

  // No system store at all: Node's built-in list.
  const empty = join(dir, 'empty.crt')
  await writeFile(empty, '')
  t.equal((await systemRoots({ SSL_CERT_FILE: empty })).source !== empty, true, 'a file without certificates is skipped')

  const yaml = join(dir, 'c.yaml')
  await writeFile(yaml, config(join(dir, 'cli-ca'), ['a.test']))
  const r = await cli(['ca', '--config', yaml, '--bundle', join(dir, 'cli-bundle.pem')])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `bundle: ${join(dir, 'cli-bundle.pem')} (roots from `)
})

t.test('6. a port in use is named: which listener, which address', async (t) => {
  const dir = await tempDir(t)
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const port = (taken.address() as { port: number }).port
  const yaml = join(dir, 'c.yaml')
  await writeFile(yaml, config(join(dir, 'ca'), ['a.test']))
  const proxy = await cli(['run', '--config', yaml, '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0'])
  t.equal(proxy.code, 1)
  t.match(proxy.stderr, `cannot listen on proxy address 127.0.0.1:${port}: EADDRINUSE`)
  const admin = await cli(['run', '--config', yaml, '--listen', '127.0.0.1:0', '--admin', `127.0.0.1:${port}`])
  t.match(admin.stderr, `cannot listen on admin address 127.0.0.1:${port}: EADDRINUSE`)
})
