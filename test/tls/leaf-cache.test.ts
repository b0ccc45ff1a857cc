import { X509Certificate } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { loadOrCreateCa, type CertificateAuthority, type LeafCertificate } from '../../src/tls/ca.js'
import { LeafCache } from '../../src/tls/leaf-cache.js'
import { DAY, ManualClock, tempDir, tlsGet, tlsServer } from './helpers.js'

/** Counts mints by wrapping the CA's own mintLeaf; `failNext` makes the next mint reject. */
function spyOnMint (ca: CertificateAuthority): { calls: string[], failNext: () => void } {
  const calls: string[] = []
  let fail = false
  const real = ca.mintLeaf.bind(ca)
  Object.assign(ca, {
    mintLeaf: async (host: string, validityMs: number): Promise<LeafCertificate> => {
      calls.push(host)
      if (fail) { fail = false; throw new Error('mint failed') }
      return await real(host, validityMs)
    },
  })
  return { calls, failNext: () => { fail = true } }
}

async function setup (t: Test, opts: { nameConstraints?: string[], max?: number, clock?: ManualClock } = {}): Promise<{ ca: CertificateAuthority, leaves: LeafCache, spy: ReturnType<typeof spyOnMint> }> {
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 30 * DAY, nameConstraints: opts.nameConstraints, clock: opts.clock })
  const spy = spyOnMint(ca)
  const leaves = new LeafCache({ ca, validityMs: 10 * DAY, max: opts.max ?? 1000, clock: opts.clock })
  return { ca, leaves, spy }
}

t.test('a real TLS server using the cache as SNICallback is trusted by node for the SNI host', async (t) => {
  const { ca, leaves, spy } = await setup(t)
  const port = await tlsServer(t, {
    SNICallback: (name, cb) => { leaves.secureContext(name).then((ctx) => cb(null, ctx), (err: Error) => cb(err)) },
  })
  t.equal(await tlsGet(port, { ca: ca.certPem, servername: 'api.tool.test' }), 'ok api.tool.test')
  t.equal(await tlsGet(port, { ca: ca.certPem, servername: 'api.tool.test' }), 'ok api.tool.test')
  t.equal(await tlsGet(port, { ca: ca.certPem, servername: 'other.tool.test' }), 'ok other.tool.test')
  t.same(spy.calls, ['api.tool.test', 'other.tool.test'], 'one mint per host')
  // The server's leaf is exactly for the requested host, and the chain is sent (the client only trusts the anchor).
  await t.rejects(tlsGet(port, {
    ca: ca.certPem,
    servername: 'api.tool.test',
    checkServerIdentity: (host, cert) => {
      t.equal(cert.subjectaltname, 'DNS:api.tool.test')
      return new Error('seen')
    }
  }), { message: 'seen' })
  // TLS below 1.2 is not offered.
  await t.rejects(tlsGet(port, { ca: ca.certPem, servername: 'api.tool.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }))
})

t.test('an IP literal (no SNI) gets a context whose leaf node verifies by IP, as on a CONNECT tunnel', async (t) => {
  const { ca, leaves } = await setup(t)
  const secureContext = await leaves.secureContext('127.0.0.1')
  // As the proxy does for CONNECT 127.0.0.1:443: TLS over an accepted socket, context picked from the target.
  const server = net.createServer((socket) => {
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext })
    secure.on('secure', () => secure.end('ok ip'))
    secure.on('error', () => socket.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  t.equal(await tlsGet((server.address() as net.AddressInfo).port, { ca: ca.certPem }), 'ok ip')
})

t.test('100 concurrent asks for one host make one mint and share one context', async (t) => {
  const { leaves, spy } = await setup(t)
  const contexts = await Promise.all(Array.from({ length: 100 }, async () => await leaves.secureContext('api.tool.test')))
  t.equal(spy.calls.length, 1)
  t.equal(new Set(contexts).size, 1)
  t.equal(leaves.size, 1)
})

t.test('the LRU bound holds: the least recently used host is evicted and re-minted on return', async (t) => {
  const { leaves, spy } = await setup(t, { max: 3 })
  for (const h of ['a.test', 'b.test', 'c.test', 'a.test', 'd.test', 'e.test']) await leaves.secureContext(h)
  t.equal(leaves.size, 3)
  t.same(spy.calls, ['a.test', 'b.test', 'c.test', 'd.test', 'e.test'])
  await leaves.secureContext('a.test') // recently used before d and e, so kept
  await leaves.secureContext('b.test') // evicted
  t.same(spy.calls.slice(5), ['b.test'])
  t.equal(leaves.size, 3)
})

t.test('a cached leaf is re-minted once 80 % of its validity has passed', async (t) => {
  const clock = new ManualClock()
  const { leaves, spy } = await setup(t, { clock })
  const first = await leaves.secureContext('api.tool.test')
  clock.advance(7.9 * DAY)
  t.equal(await leaves.secureContext('api.tool.test'), first)
  clock.advance(0.1 * DAY)
  const second = await leaves.secureContext('api.tool.test')
  t.not(second, first)
  t.equal(spy.calls.length, 2)
  t.equal(leaves.size, 1)
})

t.test('a failed mint is not cached: every waiter sees the error, the next ask mints again', async (t) => {
  const { leaves, spy } = await setup(t)
  spy.failNext()
  const asks = Array.from({ length: 5 }, async () => await leaves.secureContext('api.tool.test'))
  for (const ask of asks) await t.rejects(ask, { message: 'mint failed' })
  t.equal(spy.calls.length, 1)
  t.equal(leaves.size, 0)
  t.ok(await leaves.secureContext('api.tool.test'))
  t.equal(spy.calls.length, 2)
})

t.test('bad hosts and hosts outside the name constraints are refused without minting', async (t) => {
  const { leaves, spy } = await setup(t, { nameConstraints: ['api.tool.test'] })
  for (const host of ['', 'API.tool.test', 'a_b.test', 'api.tool.test:443', '[::1]', 'a b', 'a\nb']) {
    await t.rejects(leaves.secureContext(host), { code: 'SIDEKEY_BAD_REQUEST', status: 400 }, JSON.stringify(host))
  }
  for (const host of ['evil.test', '127.0.0.1']) {
    await t.rejects(leaves.secureContext(host), { code: 'SIDEKEY_EGRESS_DENIED', status: 403 }, host)
  }
  t.same(spy.calls, [])
  const ctx = await leaves.secureContext('api.tool.test')
  t.ok(ctx)
  t.equal(spy.calls.length, 1)
})

t.test('the cached context carries a leaf valid for the configured time', async (t) => {
  const clock = new ManualClock()
  const { ca, leaves } = await setup(t, { clock })
  let seen: string | undefined
  const port = await tlsServer(t, {
    SNICallback: (name, cb) => { leaves.secureContext(name).then((ctx) => cb(null, ctx), (err: Error) => cb(err)) },
  })
  await t.rejects(tlsGet(port, {
    ca: ca.certPem,
    servername: 'api.tool.test',
    checkServerIdentity: (_host, cert) => {
      seen = cert.valid_to
      return new Error('stop')
    }
  }))
  t.ok(seen !== undefined && Date.parse(seen) <= clock.now() + 10 * DAY)
  t.ok(new X509Certificate(ca.certPem).ca)
})

t.test('constructor refuses a nonsense bound or validity', async (t) => {
  const ca = await loadOrCreateCa({ dir: await tempDir(t), validityMs: 30 * DAY })
  t.throws(() => new LeafCache({ ca, validityMs: DAY, max: 0 }), { code: 'SIDEKEY_CONFIG_INVALID' })
  t.throws(() => new LeafCache({ ca, validityMs: 0 }), { code: 'SIDEKEY_CONFIG_INVALID' })
  t.equal(new LeafCache({ ca, validityMs: DAY }).size, 0)
  t.ok(tls.rootCertificates.length > 0)
})
