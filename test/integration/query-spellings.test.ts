// A query-injected tool sees every spelling of its parameter name as the name (docs/threat-model.md, "The agent"):
// with require_placeholder, a second spelling carrying another value is refused before anything reaches the tool;
// without it, every spelling is removed, so the upstream reads exactly one parameter of that name: the real key.
// Through absolute-form HTTP and an intercepted CONNECT tunnel, bytes written raw so no client re-encodes them.
import t from 'tap'
import { join } from 'node:path'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream, upstreamPki } from '../helpers/upstream.js'
import { bodyOf } from '../hardening/helpers.js'
import { until } from '../helpers/until.js'
import { answerOk, rawGets, type RawAnswer } from '../helpers/raw-get.js'

const REAL_KEY = 'real-query-key-7f3a9c'
const pki = await upstreamPki()
const up = await startUpstream({
  tls: await pki.cert('api.tool.test'),
  handler: answerOk,
})
t.teardown(() => up.close())
const dir = t.testdir({ key: REAL_KEY })
const AUTHORITY = `api.tool.test:${up.port}`
const sk = await startSidekey(t, `
instance_id: query-spellings
ca: { dir: {{CA_DIR}} }
upstream_ca_file: ${pki.caFile}
resolve: { api.tool.test: 127.0.0.1 }
issuers: { key: { type: file, path: ${join(dir, 'key')} } }
tools:
  strict:
    match: { host: api.tool.test, port: ${up.port}, path_prefix: /strict/ }
    issuer: key
    inject: { query: api_key }
    placeholder: sidekey
    require_placeholder: true
  lax:
    match: { host: api.tool.test, port: ${up.port}, path_prefix: /lax/ }
    issuer: key
    inject: { query: api_key }
    placeholder: sidekey
`)

const transports = rawGets(sk.proxyPort, AUTHORITY, 'api.tool.test', sk.caDir)

/** The credential.used event of the request sent by `send`. */
async function audited (send: () => Promise<RawAnswer>): Promise<RawAnswer & { event: Record<string, unknown> }> {
  const before = sk.log.events('credential.used').length
  const answer = await send()
  await until(() => sk.log.events('credential.used').length > before)
  return { ...answer, event: sk.log.events('credential.used')[before]! }
}

/** An independent reading of what the upstream got: the values of every parameter an upstream could read as api_key. */
function apiKeys (url: string): string[] {
  const query = url.slice(url.indexOf('?') + 1)
  return query.split(/[&;]/).map((part) => [...new URLSearchParams(part)][0]).filter((p) => p !== undefined)
    .filter(([name]) => /^api[_. ]key(\[.*)?$/i.test(name.trim())).map(([, value]) => value)
}

const STOLEN = [
  'API_KEY=STOLEN&api_key=sidekey', 'api_key=sidekey&x=1;api_key=STOLEN', 'api_key=sidekey;api_key=STOLEN',
  'api_key=sidekey&api_key[]=STOLEN', 'api_key=sidekey&Api_Key=STOLEN', 'api_key=sidekey&%61pi_key=STOLEN',
  'api_key=sidekey&%41PI_KEY=STOLEN', 'api_key=sidekey&api_key%5B%5D=STOLEN', 'api_key=sidekey&api_key[0]=STOLEN',
  'api_key=STOLEN+sidekey',
]

for (const [how, send] of transports) {
  t.test(`${how}: require_placeholder refuses a second spelling with another value, before the tool`, async (t) => {
    for (const query of STOLEN) {
      const before = up.seen.length
      const { status, text, event } = await audited(() => send(`/strict/x?q=1&${query}`))
      t.equal(status, 403, query)
      t.match(status === 403 ? bodyOf(text) : text, { error: 'placeholder_required', tool: 'strict' }, query)
      t.match(event, { tool: 'strict', status: 403, outcome: 'placeholder_required', placeholder: 'unexpected' }, query)
      t.equal(event.credential_id, null)
      t.equal(up.seen.length, before, `${query}: the tool saw nothing`)
    }
    t.notOk(sk.log.text.includes('STOLEN'), 'no audit line holds the agent\'s value')
  })

  t.test(`${how}: the placeholder in several spellings passes; the tool reads one api_key, the real one`, async (t) => {
    const placeholders = 'api_key=sidekey&API_KEY=sidekey;api_key[]=sidekey'
    const { status, event } = await audited(() => send(`/strict/x?q=1&${placeholders}&r=%20`))
    t.equal(status, 200)
    t.match(event, { tool: 'strict', status: 200, placeholder: 'stripped' })
    t.equal(up.seen.at(-1)!.url, `/strict/x?q=1&r=%20&api_key=${REAL_KEY}`, 'the other parameters byte for byte')
  })

  t.test(`${how}: without require_placeholder every spelling is removed before the real key is added`, async (t) => {
    const spellings = 'api_key=sidekey&API_KEY=STOLEN;api_key[]=STOLEN2&%61pi_key=STOLEN3'
    const { status } = await audited(() => send(`/lax/x?q=1&${spellings}&r=2`))
    t.equal(status, 200)
    const url = up.seen.at(-1)!.url
    t.same(apiKeys(url), [REAL_KEY], url)
    t.notOk(url.includes('STOLEN'), url)
  })
}
