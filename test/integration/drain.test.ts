import t from 'tap'
import { once } from 'node:events'
import { request, ProxyAgent } from 'undici'
import { echo, startUpstream, upstreamPki } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { sidekeyCa, tlsThroughTunnel } from '../helpers/connect.js'
import { until } from '../helpers/until.js'
import { connectTo } from '../protocols/helpers.js'

/** SIGTERM's drain and the header timeout hold inside intercepted TLS tunnels, not only on the listener itself. */
const pki = await upstreamPki()
let release: (() => void) | undefined
const up = await startUpstream({
  tls: await pki.cert('api.tool.test'),
  handler: (req, res, seen) => {
    if (req.url === '/slow') { release = () => echo(req, res, seen); return }
    echo(req, res, seen)
  },
})
t.teardown(() => up.close())
const yaml = `
instance_id: drain-1
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { api.tool.test: 127.0.0.1 }
limits: { headers_timeout: 1s }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local }
`

t.test('a slowloris inside an intercepted tunnel is cut by headers_timeout, not left to the idle timeout', async (t) => {
  const sk = await startSidekey(t, yaml)
  const tls = await tlsThroughTunnel(sk.proxyPort, `api.tool.test:${up.port}`, { servername: 'api.tool.test', ca: sidekeyCa(sk.caDir) })
  tls.write('GET / HTTP/1.1\r\nHost: api.tool.test\r\nX-Slow: ')
  let answer = ''
  tls.on('data', (c: Buffer) => { answer += c.toString() })
  const closed = once(tls, 'close')
  const bound = setTimeout(() => tls.destroy(new Error('not reaped')), 8000)
  await closed
  clearTimeout(bound)
  t.match(answer, /^HTTP\/1\.1 408/, 'answered 408 and closed')
  t.equal(up.seen.length, 0, 'nothing reached the tool')
})

t.test('close() drains a request in flight inside an intercepted TLS tunnel, then stops', async (t) => {
  const sk = await startSidekey(t, yaml)
  const agent = new ProxyAgent({ uri: sk.proxyUrl, requestTls: { ca: sidekeyCa(sk.caDir) } })
  t.teardown(() => agent.close())
  const warm = await request(`https://api.tool.test:${up.port}/warm`, { dispatcher: agent })
  await warm.body.dump()
  const inFlight = request(`https://api.tool.test:${up.port}/slow`, { dispatcher: agent }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }))
  await until(() => release !== undefined, 'the upstream to hold /slow')
  const closing = sk.app.close()
  // Released only once close() is under way (the listener refuses new connections), so that it must drain.
  const refused = (): Promise<boolean> => connectTo(sk.proxyPort).then((s) => { s.destroy(); return false }, () => true)
  await until(refused, 'the proxy listener to close')
  release!()
  const res = await inFlight
  t.equal(res.status, 200, 'the request in flight completed')
  t.match(JSON.parse(res.body), { url: '/slow' })
  await closing
  t.pass('close() resolved once the tunnel was done')
})
