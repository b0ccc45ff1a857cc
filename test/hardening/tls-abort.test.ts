// An agent that drops its TLS connection in the middle of the handshake (killed, crash-looping, or doing it on
// purpose: docs/threat-model.md, "The agent") must not keep the connection slot for tls_handshake_timeout: with
// max_connections slots, a few dozen dropped handshakes a second would otherwise lock every agent out.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSidekey } from '../helpers/sidekey.js'
import { tlsThroughTunnel } from '../helpers/connect.js'
import { startH2Upstream } from '../protocols/h2-helpers.js'
import { upstreamPki } from '../helpers/upstream.js'

const MAX = 8
const pki = await upstreamPki()
const up = await startH2Upstream(await pki.cert('tls.tool.test'))
t.teardown(() => up.close())
const sk = await startSidekey(t, `
instance_id: agent-tls-abort
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { tls.tool.test: 127.0.0.1 }
limits: { max_connections: ${MAX}, tls_handshake_timeout: 60s }
issuers: { local: { type: local_jwt } }
tools: { tls: { match: { host: "*.tool.test", port: ${up.port} }, issuer: local } }
`)
const caPem = readFileSync(join(sk.caDir, 'ca.pem'), 'utf8')

for (const alpn of ['http/1.1', 'h2']) {
  t.test(`${alpn}: ${4 * MAX} handshakes dropped by the agent in sequence, then a request is served`, async (t) => {
    // Destroyed at once on secureConnect: the agent's Finished is not sent, the proxy reads the end mid-handshake.
    for (let i = 0; i < 4 * MAX; i++) {
      const socket = await tlsThroughTunnel(sk.proxyPort, `n${i}.tool.test:${up.port}`, { servername: `n${i}.tool.test`, ca: caPem, alpn: [alpn] })
      socket.on('error', () => {}).destroy()
    }
    const socket = await tlsThroughTunnel(sk.proxyPort, `tls.tool.test:${up.port}`, { servername: 'tls.tool.test', ca: caPem })
    t.teardown(() => socket.destroy())
    socket.write(`GET /after-drops HTTP/1.1\r\nHost: tls.tool.test:${up.port}\r\nConnection: close\r\n\r\n`)
    let text = ''
    for await (const chunk of socket) text += (chunk as Buffer).toString()
    t.match(text, /^HTTP\/1\.1 200 /, `served past max_connections=${MAX}: the dropped handshakes freed their slots`)
    t.equal(sk.log.events('tls.client_error').filter((e) => e.alert === 'closed').length >= 4 * MAX, true, 'each drop audited as closed')
  })
}
