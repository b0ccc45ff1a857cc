import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import type { LookupAddress } from 'node:dns'
import { request } from 'undici'
import { startSidekey, tick } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki, type Upstream } from '../helpers/upstream.js'
import { rawGets } from '../helpers/raw-get.js'
import { bodyOf } from '../hardening/helpers.js'
import { parseConfig } from '../../src/config/load.js'
import { ConfigError } from '../../src/config/config-error.js'
import { cli } from '../helpers/cli.js'

// A tool's `upstream:` sends what it matches to a stand-in or an egress gateway: the agent keeps its base URL.
const TOKEN = 'real-token-4f1c9a7e0b3d5a2c'
const pki = await upstreamPki()
const dir = t.testdir({})
const tokenFile = join(dir, 'token')
writeFileSync(tokenFile, TOKEN)

/** A TLS stand-in that records the TLS name each request came under, and every decrypted byte it was sent. */
interface StandIn extends Upstream {
  /** The TLS name each request came under. */
  sni: Array<string | false | null>
  /** Every decrypted byte sent to it, as latin1. */
  received: () => string
  /** TCP connections accepted. */
  dials: () => number
}

async function standIn (certName: string): Promise<StandIn> {
  const sni: Array<string | false | null> = []
  const up = await startUpstream({
    tls: await pki.cert(certName),
    handler: (req, res, seen) => {
      sni.push((req.socket as TLSSocket).servername)
      const body = JSON.stringify({ host: seen.headers.host, authorization: seen.headers.authorization ?? null })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    },
  })
  const bytes: Buffer[] = []
  let dials = 0
  up.server.on('connection', () => { dials++ })
  up.server.on('secureConnection', (s: TLSSocket) => s.on('data', (c: Buffer) => bytes.push(c)))
  t.teardown(() => up.close())
  return Object.assign(up, { sni, received: () => Buffer.concat(bytes).toString('latin1'), dials: () => dials })
}

const config = (tools: string, extra = ''): string => `
instance_id: upstream-override
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
${extra}
issuers: { file: { type: file, path: ${tokenFile} } }
tools:
${tools}
`

t.test('the matched host, absolute-form and through an intercepted CONNECT, reaches the stand-in', async (t) => {
  const gw = await standIn('gateway.corp.test')
  // api.tool.test is neither pinned nor in DNS: a dial to it would fail, so a 200 can only come from the stand-in.
  const sk = await startSidekey(t, config(`
  api:
    match: { host: api.tool.test }
    issuer: file
    placeholder: sidekey
    upstream: { host: standin.test, port: ${gw.port}, tls_server_name: gateway.corp.test }`,
  'resolve: { standin.test: 127.0.0.1 }'))

  for (const [how, get] of rawGets(sk.proxyPort, 'api.tool.test:443', 'api.tool.test', sk.caDir)) {
    const before = gw.seen.length
    const answer = await get('/v1/user')
    t.equal(answer.status, 200, `${how}: answered by the stand-in`)
    t.equal(gw.seen.length, before + 1, `${how}: one request reached it`)
    const seen = gw.seen.at(-1)!
    t.equal(seen.headers.authorization, `Bearer ${TOKEN}`, `${how}: the stand-in saw the real credential`)
    t.equal(seen.headers.host, 'api.tool.test', `${how}: Host is the authority the agent addressed`)
    t.equal(seen.url, '/v1/user')
    t.equal(gw.sni.at(-1), 'gateway.corp.test', `${how}: under the configured TLS name`)
    t.notOk(answer.text.includes(TOKEN), `${how}: the agent never read the credential back`)
    const echo = { host: 'api.tool.test', authorization: 'Bearer sidekey' }
    t.match(bodyOf(answer.text), echo, `${how}: its echo was scrubbed`)
  }
  t.notOk(gw.received().includes('Bearer sidekey'), 'the placeholder never reached the stand-in')

  await tick()
  const used = sk.log.events('credential.used')
  t.equal(used.length, 2)
  for (const line of used) {
    const upstream = `https://standin.test:${gw.port}`
    t.match(line, { tool: 'api', host: 'api.tool.test', status: 200, upstream }, 'audited on the tool')
  }
  t.notOk(sk.log.text.includes(TOKEN), 'no credential in the log')

  const res = await request(`${sk.adminUrl}/status`)
  const status = await res.body.json() as { tools: Record<string, { upstream?: unknown }> }
  const shown = { scheme: 'https', host: 'standin.test', port: gw.port, tls_server_name: 'gateway.corp.test' }
  t.same(status.tools.api!.upstream, shown)
})

t.test('plain http to a stand-in pinned to loopback, where plaintext: true allows it', async (t) => {
  const mock = await startUpstream()
  t.teardown(() => mock.close())
  const sk = await startSidekey(t, config(`
  api:
    match: { host: api.tool.test }
    issuer: file
    plaintext: true
    upstream: { host: mock.test, scheme: http, port: ${mock.port} }`,
  'resolve: { mock.test: 127.0.0.1 }'))
  for (const [how, get] of rawGets(sk.proxyPort, 'api.tool.test:443', 'api.tool.test', sk.caDir)) {
    t.equal((await get('/v1/user')).status, 200, how)
    t.match(mock.seen.at(-1), { tls: false, headers: { host: 'api.tool.test', authorization: `Bearer ${TOKEN}` } }, how)
  }
  await tick()
  const upstream = `http://mock.test:${mock.port}`
  t.match(sk.log.events('credential.used'), [{ tool: 'api', upstream }, { tool: 'api', upstream }])
})

t.test('a certificate not naming the TLS name: 502, and not one byte of the request was written', async (t) => {
  const gw = await standIn('gateway.corp.test')
  const sk = await startSidekey(t, config(`
  api: { match: { host: api.tool.test }, issuer: file, upstream: { host: standin.test, port: ${gw.port} } }`,
  'resolve: { standin.test: 127.0.0.1 }'))
  for (const [how, get] of rawGets(sk.proxyPort, 'api.tool.test:443', 'api.tool.test', sk.caDir)) {
    const answer = await get('/v1/user')
    t.equal(answer.status, 502, how)
    const detail = 'upstream certificate does not name this host'
    t.match(bodyOf(answer.text), { error: 'upstream_tls_failed', tool: 'api', detail })
  }
  t.ok(gw.dials() > 0, 'the stand-in was dialled (the name, not the connection, failed)')
  t.equal(gw.received(), '', 'no request byte (so no credential) reached it')
  t.equal(gw.seen.length, 0)
  await tick()
  const error = /^SIDEKEY_UPSTREAM_TLS:ERR_TLS_CERT_ALTNAME_INVALID/
  t.match(sk.log.events('credential.used'), [{ tool: 'api', status: 502, error }, { tool: 'api', status: 502, error }])
})

t.test('an override whose name resolves to a private address is refused unless pinned', async (t) => {
  const gw = await standIn('standin.test')
  // A resolver answering what an attacker's DNS might: a loopback address for a name no pin covers.
  const dns = ((_host: string, _opts: unknown, cb: (err: null, addresses: LookupAddress[]) => void) => {
    cb(null, [{ address: '127.0.0.1', family: 4 }])
  }) as unknown as typeof import('node:dns').lookup
  const sk = await startSidekey(t, config(`
  api: { match: { host: api.tool.test }, issuer: file, upstream: { host: standin.test, port: ${gw.port} } }`), { dns })
  for (const [how, get] of rawGets(sk.proxyPort, 'api.tool.test:443', 'api.tool.test', sk.caDir)) {
    const answer = await get('/v1/user')
    t.equal(answer.status, 403, how)
    t.match(bodyOf(answer.text), { error: 'egress_denied', reason: 'private_address' })
  }
  t.equal(gw.dials(), 0, 'never dialled')
  await tick()
  const denied = { tool: 'api', host: 'api.tool.test', reason: 'private_address' }
  t.match(sk.log.events('egress.denied'), [denied, denied])
})

t.test('config: an override is held to a tool host\'s rules, and plain http to what plaintext allows', async (t) => {
  const problems = (tools: string, extra = ''): string => {
    try {
      parseConfig(config(tools, extra).replace('{{CA_DIR}}', join(dir, 'ca')), 'test.yaml', {})
      return ''
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      return err.message
    }
  }
  const api = 'match: { host: api.tool.test }, issuer: file'
  t.match(problems(`  a: { ${api}, upstream: { host: 10.0.0.5 } }`), /upstream\.host.*private address; credentials/s)
  t.match(problems(`  a: { ${api}, upstream: { host: "*.corp.test" } }`), /a wildcard cannot be dialled/)
  t.match(problems(`  a: { ${api}, upstream: { host: 93.184.216.34 } }`), /IP literal sends no TLS server name/)
  t.match(problems(`  a: { ${api}, upstream: { host: mock.test, scheme: http, tls_server_name: x.test } }`),
    /tls_server_name applies to scheme https only/)
  const pinned = 'resolve: { mock.test: 127.0.0.1, far.test: 192.0.2.10 }'
  t.match(problems(`  a: { ${api}, upstream: { host: mock.test, scheme: http } }`, pinned),
    /scheme: http sends the credential .* it needs plaintext: true/s)
  t.match(problems(`  a: { ${api}, plaintext: true, upstream: { host: far.test, scheme: http } }`, pinned),
    /only allowed to a host pinned to a loopback address/)
  const loopback = `  a: { ${api}, plaintext: true, upstream: { host: mock.test, scheme: http, port: 8080 } }`
  t.equal(problems(loopback, pinned), '', 'http to loopback, allowed')
  t.equal(problems(`  a: { ${api}, upstream: { host: gw.corp.test, port: 8443, tls_server_name: gw.corp.test } }`), '')
})

t.test('sidekey check names each tool sent elsewhere, and where', async (t) => {
  const file = join(dir, 'check.yaml')
  const tools = `
  api: { match: { host: api.tool.test }, issuer: file, upstream: { host: s.test, port: 843, tls_server_name: gw.test } }
  local: { match: { host: b.tool.test }, issuer: file, plaintext: true, upstream: { host: mock.test, scheme: http } }
  plain: { match: { host: plain.tool.test }, issuer: file }`
  writeFileSync(file, config(tools, 'resolve: { mock.test: 127.0.0.1 }').replace('{{CA_DIR}}', join(dir, 'ca')))
  const { code, stdout } = await cli(['check', '--config', file, '--no-files'])
  t.equal(code, 0, stdout)
  t.match(stdout, 'tool api: api.tool.test:443 is sent to https://s.test:843, TLS name gw.test\n')
  t.match(stdout, 'tool local: b.tool.test:443 is sent to http://mock.test, in clear\n')
  t.notMatch(stdout, 'tool plain')
})
