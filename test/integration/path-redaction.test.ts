// A secret in a tool's path reaches the tool as sent and stays out of the audit (docs/threat-model.md, "A log
// reader"): a Slack incoming-webhook secret and a long random token segment are `<redacted:kind>` in
// credential.used and egress.denied, through absolute-form HTTP and an intercepted CONNECT tunnel.
import t from 'tap'
import { join } from 'node:path'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { raw } from '../hardening/helpers.js'
import { until } from '../helpers/until.js'
import { completeResponse } from '../hardening/tunnel-client.js'
import { answerOk, rawGets } from '../helpers/raw-get.js'

// The team and bot ids stay readable; this secret has no digit, so only its place in the path gives it away.
const SLACK_HOOK = '/services/T01ABCDEF/B02GHIJK'
const SLACK_SECRET = 'xYzAbCdEfGhIjKlMnOpQrStUv'
const TOKEN = 'q7Lm2Xv9Rt4Kp8Zw3Bn6Yc1Hd5Gf0Js2Ua7Ve4Ni'
const pki = await upstreamPki()
const up = await startUpstream({
  tls: await pki.cert('hooks.tool.test'),
  handler: answerOk,
})
t.teardown(() => up.close())
const dir = t.testdir({ key: 'real-header-key-5d1e' })
const AUTHORITY = `hooks.tool.test:${up.port}`
const sk = await startSidekey(t, `
instance_id: path-redaction
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { hooks.tool.test: 127.0.0.1 }
issuers: { key: { type: file, path: ${join(dir, 'key')} } }
tools:
  slack: { match: { host: hooks.tool.test, port: ${up.port}, path_prefix: /services/ }, issuer: key }
  tokens: { match: { host: hooks.tool.test, port: ${up.port}, path_prefix: /t/ }, issuer: key }
`)

const cases = [
  { path: `${SLACK_HOOK}/${SLACK_SECRET}`, audited: `${SLACK_HOOK}/<redacted:slack_webhook>` },
  { path: `/t/${TOKEN}/send`, audited: '/t/<redacted:high_entropy>/send' },
]
const secrets = [SLACK_SECRET, TOKEN]

for (const [how, send] of rawGets(sk.proxyPort, AUTHORITY, 'hooks.tool.test', sk.caDir)) {
  t.test(`${how}: the tool receives the real path, the audit line the redacted one`, async (t) => {
    for (const { path, audited } of cases) {
      const before = sk.log.events('credential.used').length
      await send(`${path}?x=1`)
      await until(() => sk.log.events('credential.used').length > before)
      t.equal(up.seen.at(-1)!.url, `${path}?x=1`, 'the upstream got the path as sent')
      t.match(sk.log.events('credential.used')[before], { status: 200, path: audited }, path)
    }
    t.same(secrets.filter((s) => sk.log.text.includes(s)), [], 'no log line holds a path secret')
  })
}

t.test('egress.denied: a secret in the path of a call no tool owns is redacted too', async (t) => {
  const before = sk.log.events('egress.denied').length
  await raw(sk.proxyPort, `GET http://nowhere.tool.test/t/${TOKEN}/send HTTP/1.1\r\nHost: nowhere.tool.test\r\n\r\n`,
    { until: completeResponse })
  await until(() => sk.log.events('egress.denied').length > before)
  t.match(sk.log.events('egress.denied')[before], { reason: 'no_tool', path: '/t/<redacted:high_entropy>/send' })
  t.notOk(sk.log.text.includes(TOKEN))
})
