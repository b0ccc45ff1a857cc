// Threat model, the agent, open proxy and SSRF: sidekey is not an open proxy and not an SSRF gadget.
// Every test here runs behind guardEgress: a connect to anything outside loopback is refused in-process and recorded,
// so a regression shows up as a recorded attempt, never as traffic leaving the machine.
import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import { request, Agent } from 'undici'
import { startSidekey, type RunningSidekey } from '../helpers/sidekey.js'
import { bodyOf, fakeDns, guardEgress, raw, startRawUpstream } from './helpers.js'
import { until } from '../helpers/until.js'
import { completeResponse } from './tunnel-client.js'
import { freePort } from '../helpers/free-port.js'

const guard = guardEgress(t)
const up = await startRawUpstream()
t.teardown(() => up.close())

// "Public" answers use 8.8.8.8-style addresses: the guard refuses them, so nothing is ever sent there.
const PUBLIC = '8.8.4.4'
const dns = fakeDns((name, call) => {
  switch (name) {
    case 'metadata.google.internal': return ['169.254.169.254']
    case 'private.test': return ['10.1.2.3']
    case 'ula.test': return ['fd00::5']
    case 'loopback.test': return ['127.0.0.1']
    case 'mixed.test': return [PUBLIC, '127.0.0.1'] // one bad record spoils the name
    case 'mixed6.test': return [PUBLIC, 'fe80::1']
    // public when checked the first time, loopback (where the upstream listens) on every later lookup.
    case 'rebind-tool.test': case 'rebind-connect.test': case 'rebind-http.test': return call === 1 ? [PUBLIC] : ['127.0.0.1']
    default: return undefined
  }
})

const tunnelConfig = `
instance_id: agent-b
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
egress: { unmatched: tunnel, block_private: true, connect_ports: [443, ${up.port}] }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true }
  rebind: { match: { host: rebind-tool.test, port: ${up.port} }, issuer: local, audience: https://rebind }
`
const sk = await startSidekey(t, tunnelConfig, { dns: dns.lookup })
const deny = await startSidekey(t, tunnelConfig.replace('unmatched: tunnel', 'unmatched: deny'), { dns: dns.lookup })

const connect = (s: RunningSidekey, authority: string, extra = ''): Promise<Awaited<ReturnType<typeof raw>>> =>
  raw(s.proxyPort, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n${extra}`)
const get = (s: RunningSidekey, url: string, method = 'GET'): Promise<Awaited<ReturnType<typeof raw>>> =>
  raw(s.proxyPort, `${method} ${url} HTTP/1.1\r\nHost: x\r\n\r\n`, { until: (text) => completeResponse(text) || (method === 'HEAD' && text.includes('\r\n\r\n')) })

t.test('CONNECT to a port outside the allowlist is 403, then closed, and dials nothing', async (t) => {
  for (const s of [sk, deny]) {
    for (const authority of ['example.test:22', 'example.test:25', 'example.test:6379', 'api.tool.test:22', '8.8.8.8:25']) {
      const r = await connect(s, authority)
      t.equal(r.status, 403, authority)
      t.ok(r.closed, 'closed')
    }
  }
  t.same(guard.attempts, [])
  t.equal(dns.calls.get('example.test'), undefined, 'not even resolved')
})

t.test('a refused CONNECT with a request in the same write: 403, socket closed, trailing bytes never parsed', async (t) => {
  const before = up.requests.length
  for (const s of [sk, deny]) {
    const r = await connect(s, 'example.test:22', `GET http://api.tool.test:${up.port}/smuggled HTTP/1.1\r\nHost: api.tool.test\r\n\r\n`)
    t.equal(r.status, 403)
    t.ok(r.closed)
    t.equal(r.text.match(/HTTP\/1\.1 \d{3}/g)?.length, 1, 'exactly one response: the smuggled request was not served')
  }
  t.equal(up.requests.length, before)
  t.notOk(sk.log.text.includes('/smuggled') || deny.log.text.includes('/smuggled'), 'never parsed, so never logged')
})

const B3 = ['169.254.169.254', '169.254.170.2', '[fd00:ec2::254]', '100.100.100.200', '127.0.0.1', '127.1.2.3', '[::1]', '0.0.0.0', '[::]',
  '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '[fc00::1]', '[fe80::1]', '100.64.0.1', '224.0.0.1', '255.255.255.255', '192.0.2.2']
const B4 = ['2852039166', '0xa9fea9fe', '0251.0376.0251.0376', '169.254.43518', '0xa9.0xfe.0xa9.0xfe', '[::ffff:169.254.169.254]', '[::ffff:a9fe:a9fe]',
  '[64:ff9b::a9fe:a9fe]', '[::ffff:0:a9fe:a9fe]', '[::169.254.169.254]', '[2002:a9fe:a9fe::1]', '127.1', '0x7f000001', '017700000001', '[0:0:0:0:0:ffff:7f00:1]']

t.test('internal, metadata and special addresses in every encoding are 403, by CONNECT and by absolute-form', async (t) => {
  for (const host of [...B3, ...B4, 'metadata.google.internal', 'private.test', 'ula.test', 'loopback.test']) {
    const c = await connect(sk, `${host}:443`)
    t.equal(c.status, 403, `CONNECT ${host}:443`)
    t.ok(c.closed)
    const g = await get(sk, `http://${host}:${up.port}/`)
    t.equal(g.status, 403, `GET http://${host}:${up.port}/`)
    t.match(bodyOf(g.text), { error: 'egress_denied' })
  }
  t.same(guard.attempts, [], 'no connect was attempted')
  t.equal(up.connections, 0)
  t.ok(sk.log.events('egress.denied').some((e) => e.reason === 'private_address'))
})

t.test('DNS rebinding: the address checked is the address dialled, and every dial checks again', async (t) => {
  const cases: Array<[string, () => Promise<number | undefined>]> = [
    ['rebind-tool.test', async () => (await get(sk, `https://rebind-tool.test:${up.port}/`)).status], // a tool host, not pinned
    ['rebind-http.test', async () => (await get(sk, `http://rebind-http.test:${up.port}/`)).status], // unmatched: tunnel, absolute-form
    ['rebind-connect.test', async () => (await connect(sk, `rebind-connect.test:${up.port}`)).status], // unmatched: tunnel, CONNECT
  ]
  for (const [name, send] of cases) {
    const attempts = guard.attempts.length
    const first = await send()
    // The first lookup said public: that address — and only that one — was dialled (the guard refused it: 502).
    t.equal(first, 502, `${name}: first dial went to the checked public address`)
    t.same(guard.attempts.slice(attempts), [PUBLIC])
    t.equal(dns.calls.get(name), 1, `${name}: one lookup for one dial`)
    // The second dial looks up again, gets loopback, and is refused before connecting.
    const second = await send()
    t.ok(second === 403 || second === 502, `${name}: rebound answer refused (${second})`)
    t.equal(guard.attempts.length, attempts + 1, 'the loopback answer was never dialled')
  }
  t.equal(up.connections, 0, 'the loopback upstream never saw the rebound name')
})

t.test('a name with any private record among its A/AAAA records is refused and not dialled', async (t) => {
  for (const name of ['mixed.test', 'mixed6.test']) {
    t.equal((await get(sk, `http://${name}:${up.port}/`)).status, 403, name)
    t.equal((await connect(sk, `${name}:443`)).status, 403, name)
  }
  t.same(guard.attempts.filter((a) => a !== PUBLIC), [])
  t.equal(up.connections, 0)
})

t.test('the proxy\'s own listener and admin port are never a destination', async (t) => {
  const adminPort = await freePort()
  const proxyPort = await freePort()
  // Even with private destinations allowed and both ports open to CONNECT, sidekey refuses itself.
  const open = await startSidekey(t, tunnelConfig.replace('block_private: true', 'block_private: false').replace(`connect_ports: [443, ${up.port}]`, `connect_ports: [443, ${up.port}, ${adminPort}, ${proxyPort}]`),
    { dns: dns.lookup, listen: `127.0.0.1:${proxyPort}`, admin: `127.0.0.1:${adminPort}` })
  t.equal(open.proxyPort, proxyPort)
  for (const port of [adminPort, proxyPort]) {
    for (const host of ['127.0.0.1', 'localhost', '127.1', '[::ffff:127.0.0.1]', '0.0.0.0', 'loopback.test', '[::1]']) {
      const g = await get(open, `http://${host}:${port}/metrics`)
      t.equal(g.status, 403, `GET http://${host}:${port}/`)
      const c = await connect(open, `${host}:${port}`)
      t.equal(c.status, 403, `CONNECT ${host}:${port}`)
    }
  }
  // The default config refuses them as loopback anyway.
  t.equal((await get(sk, `http://127.0.0.1:${sk.app.adminAddress.split(':').pop()}/metrics`)).status, 403)
  const metrics = await request(`${open.adminUrl}/metrics`, { dispatcher: new Agent() })
  t.notMatch(await metrics.body.text(), /sidekey_requests_total\{[^}]*code="200"/, 'nothing was served through the proxy to itself')
})

t.test('origin-form requests and non-http schemes are 400', async (t) => {
  for (const s of [sk, deny]) {
    const origin = await raw(s.proxyPort, `GET / HTTP/1.1\r\nHost: api.tool.test:${up.port}\r\n\r\n`)
    t.equal(origin.status, 400, 'origin-form')
    t.ok(origin.closed)
    for (const target of ['ftp://api.tool.test/', 'gopher://api.tool.test:70/_x', 'file:///etc/passwd', 'ws://api.tool.test/', 'wss://api.tool.test/', 'HTTP://api.tool.test/', '//api.tool.test/', '*']) {
      const r = await raw(s.proxyPort, `GET ${target} HTTP/1.1\r\nHost: api.tool.test\r\n\r\n`)
      t.equal(r.status, 400, target)
    }
  }
  t.equal(up.requests.length, 0)
})

t.test('open-proxy probes (GET, HEAD, CONNECT to a loopback service nobody allowlisted) get nothing', async (t) => {
  let probed = 0
  const probe = createServer((s) => { probed++; s.end('HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nopen-proxy!!') })
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => probe.close(resolve)))
  const port = (probe.address() as AddressInfo).port
  for (const s of [sk, deny]) {
    for (const method of ['GET', 'HEAD']) {
      for (const host of ['127.0.0.1', 'localhost', 'loopback.test']) {
        const r = await get(s, `http://${host}:${port}/`, method)
        t.equal(r.status, 403, `${method} ${host}`)
        t.notMatch(r.text, /open-proxy/)
      }
    }
    for (const authority of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost:443', '127.0.0.1:443']) {
      const r = await connect(s, authority)
      t.equal(r.status, 403, `CONNECT ${authority}`)
    }
  }
  t.equal(probed, 0, 'the probe service was never reached')
  await until(() => sk.log.events('egress.denied').length > 0)
})

t.test('a name pinned to a private address is exempt from block_private only on the ports of its tools', async (t) => {
  // "Another local service": an admin API on loopback that the agent must not reach through the pin.
  let reached = 0
  const admin = createServer((s) => { reached++; s.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nadmin') })
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => admin.close(resolve)))
  const adminPort = (admin.address() as AddressInfo).port
  const pinned = await startSidekey(t, tunnelConfig.replace(`connect_ports: [443, ${up.port}]`, `connect_ports: [443, ${up.port}, ${adminPort}]`), { dns: dns.lookup })
  const before = up.requests.length
  const attempts = guard.attempts.length
  for (const port of [adminPort, 443, 80]) {
    const g = await get(pinned, `http://api.tool.test${port === 80 ? '' : `:${port}`}/admin`)
    t.equal(g.status, 403, `absolute-form to the pinned name on port ${port}`)
    t.match(bodyOf(g.text), { error: 'egress_denied' })
    if (port === 80) continue
    const c = await connect(pinned, `api.tool.test:${port}`)
    t.equal(c.status, 403, `blind CONNECT to the pinned name on port ${port}`)
    t.ok(c.closed)
  }
  t.equal(reached, 0, 'the other local service was never reached')
  const denied = pinned.log.events('egress.denied').filter((e) => e.host === 'api.tool.test')
  t.equal(denied.length, 5, 'each refusal audited')
  t.ok(denied.every((e) => e.reason === 'private_address'), 'as private_address')
  // The pin still does what it was written for: the tool's own port.
  const ok = await get(pinned, `http://api.tool.test:${up.port}/tool`)
  t.equal(ok.status, 200, 'the tool on its own port is served through the pin')
  t.equal(up.requests.length, before + 1)
  t.match(up.requests.at(-1)!.line, /^GET \/tool /)
  t.equal(guard.attempts.length, attempts, 'nothing else was dialled')
})
