import t from 'tap'
import { request } from 'undici'
import { startSidekey, tick } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { bodyOf, raw } from '../hardening/helpers.js'
import { completeResponse } from '../hardening/tunnel-client.js'

const until = { until: completeResponse }

async function counters (adminUrl: string): Promise<string> {
  return await (await request(`${adminUrl}/metrics`)).body.text()
}

t.test('5, 7. every refusal is answered with its reason (body and Proxy-Status), audited with it, and counted', async (t) => {
  const pki = await upstreamPki()
  const up = await startUpstream({ tls: await pki.cert('api.tool.test') })
  t.teardown(() => up.close())
  const sk = await startSidekey(t, `
instance_id: refusals
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  local: { match: { host: localhost, port: ${up.port} }, issuer: local }
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local }
`)
  // An unpinned localhost as a tool host: refused when dialled (egress.block_private), with its reason.
  const local = await raw(sk.proxyPort, `GET http://localhost:${up.port}/v1 HTTP/1.1\r\nHost: localhost:${up.port}\r\n\r\n`, until)
  t.equal(local.status, 403)
  t.match(bodyOf(local.text), { error: 'egress_denied', reason: 'private_address', detail: /localhost resolves to a private or special address/ })
  t.match(local.text, /\r\nproxy-status: sidekey; error=destination_ip_prohibited; details="localhost resolves/)
  t.equal(up.seen.length, 0)

  const refusals: Array<[string, string, RegExp]> = [
    ['no_tool', 'GET http://elsewhere.test/ HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n', /error=http_request_denied; details="no tool matches this destination"/],
    ['port', 'CONNECT elsewhere.test:25 HTTP/1.1\r\nHost: elsewhere.test:25\r\n\r\n', /error=http_request_denied; details="CONNECT to port 25 is not allowed/],
    ['no_tool', 'CONNECT elsewhere.test:443 HTTP/1.1\r\nHost: elsewhere.test:443\r\n\r\n', /error=http_request_denied; details="no tool matches/],
    ['bad_connect_target', 'CONNECT nonsense HTTP/1.1\r\nHost: nonsense\r\n\r\n', /error=http_request_error; details=/],
  ]
  for (const [reason, wire, header] of refusals) {
    const r = await raw(sk.proxyPort, wire, until)
    t.ok(r.status === 403 || r.status === 400, `${reason}: refused (${r.status})`)
    t.match(r.text, new RegExp(`\\r\\nproxy-status: sidekey; ${header.source}`, 'i'), `${reason}: Proxy-Status`)
  }
  await tick()
  const denied = sk.log.events('egress.denied')
  t.match(denied[0], { host: 'localhost', port: up.port, reason: 'private_address', tool: 'local', method: 'GET' })
  t.notOk(denied.some((d) => d.reason === undefined || d.reason === 'other'), 'every refusal names its reason')
  t.notOk(sk.log.text.includes('SIDEKEY_EGRESS_DENIED:SIDEKEY_EGRESS_DENIED'))
  const text = await counters(sk.adminUrl)
  t.match(text, `sidekey_egress_denied_total ${denied.length}`)
  for (const reason of new Set(denied.map((d) => String(d.reason)))) {
    const n = denied.filter((d) => d.reason === reason).length
    t.match(text, `sidekey_egress_denied_by_reason_total{reason="${reason}"} ${n}`, `${reason} counted`)
  }

  // An upstream whose certificate sidekey does not trust: the agent is told what to do, in the audit's words.
  const failed = await raw(sk.proxyPort, `GET http://api.tool.test:${up.port}/v1 HTTP/1.1\r\nHost: api.tool.test:${up.port}\r\n\r\n`, until)
  t.equal(failed.status, 502)
  const body = bodyOf(failed.text)
  t.match(body, { error: 'upstream_tls_failed', tool: 'api', detail: 'upstream certificate not trusted: set upstream_ca_file' })
  t.notMatch(failed.text, /BEGIN CERTIFICATE|\/tmp\//, 'no certificate or path')
  t.match(failed.text, /\r\nproxy-status: sidekey; error=tls_certificate_error; details="upstream certificate not trusted: set upstream_ca_file"/i)
  t.match(sk.log.events('credential.used').at(-1), { tool: 'api', status: 502, error: /^SIDEKEY_UPSTREAM_TLS:/, detail: body.detail, request_id: body.request_id })
})
