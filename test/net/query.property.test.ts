// Property test for query injection (docs/threat-model.md, "The agent"): whatever spellings of the injected name
// the agent sends (case, percent-escapes, `name[…]`, `&` or `;`), what a real upstream receives through sidekey
// holds exactly one parameter an upstream could read as that name, and its value is the real key; a tool with
// require_placeholder answers 403 instead whenever one of those spellings carries anything but the placeholder.
import t from 'tap'
import fc from 'fast-check'
import { join } from 'node:path'
import { startSidekey } from '../helpers/sidekey.js'
import { startUpstream } from '../helpers/upstream.js'
import { answerOk } from '../helpers/raw-get.js'
import { raw } from '../hardening/helpers.js'
import { completeResponse } from '../hardening/tunnel-client.js'

const REAL_KEY = 'real-key-4b8e2d'
const up = await startUpstream({ handler: answerOk })
t.teardown(() => up.close())
const dir = t.testdir({ key: REAL_KEY })
const sk = await startSidekey(t, `
instance_id: query-property
ca: { dir: {{CA_DIR}} }
resolve: { q.tool.test: 127.0.0.1 }
issuers: { key: { type: file, path: ${join(dir, 'key')} } }
tools:
  lax:
    match: { host: q.tool.test, port: ${up.port}, path_prefix: /lax/ }
    issuer: key
    plaintext: true
    inject: { query: api_key }
  strict:
    match: { host: q.tool.test, port: ${up.port}, path_prefix: /strict/ }
    issuer: key
    plaintext: true
    inject: { query: api_key }
    placeholder: sidekey
    require_placeholder: true
`)

/**
 * The most lenient upstream's reading, written apart from sidekey's: each `&`- or `;`-separated part decoded by
 * URLSearchParams, the name in lower case, cut at `[`, with PHP's `.` and space as `_`.
 */
function apiKeyValues (url: string): string[] {
  const q = url.indexOf('?')
  if (q < 0) return []
  const values: string[] = []
  for (const part of url.slice(q + 1).split(/[&;]/)) {
    const [entry] = [...new URLSearchParams(part.replace(/%(?![0-9A-Fa-f]{2})/g, '%25'))]
    if (entry === undefined) continue
    const name = entry[0].trim().toLowerCase().replace(/\[.*$/, '').replace(/[. ]/g, '_')
    if (name === 'api_key') values.push(entry[1])
  }
  return values
}

const escape = (c: string, upper: boolean): string => {
  const hex = c.charCodeAt(0).toString(16)
  return '%' + (upper ? hex.toUpperCase() : hex)
}

/** A spelling of `api_key`: each character in either case or percent-encoded, `_` perhaps `.`, a bracket suffix. */
const spelling: fc.Arbitrary<string> = fc.tuple(
  fc.array(fc.nat(5), { minLength: 7, maxLength: 7 }),
  fc.constantFrom('', '', '[]', '[0]', '[x]', '%5B%5D', '%5b0%5D')
).map(([coins, suffix]) => [...'api_key'].map((c, i) => {
  const coin = coins[i]!
  if (c === '_' && coin === 5) return '.'
  if (coin === 1) return c.toUpperCase()
  if (coin >= 3) return escape(c, coin === 3)
  return c
}).join('') + suffix)

const value = fc.constantFrom('sidekey', 'sidekey', 'STOLEN', 'STOLEN+sidekey', '')
const param = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(spelling, value).map(([n, v]) => `${n}=${v}`) },
  { weight: 1, arbitrary: fc.constantFrom('q=1', 'a%20b=c', 'flag', 'api=x', 'api_keys=y', 'x=api_key') }
)
const separators = fc.array(fc.constantFrom('&', ';'), { minLength: 6, maxLength: 6 })
const query = fc.tuple(fc.array(param, { minLength: 1, maxLength: 6 }), separators)
  .map(([params, seps]) => params.map((p, i) => (i === 0 ? '' : seps[i]!) + p).join(''))

const send = async (path: string): Promise<{ status: number | undefined, seen: string | undefined }> => {
  const before = up.seen.length
  const authority = `q.tool.test:${up.port}`
  const r = await raw(sk.proxyPort, `GET http://${authority}${path} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
    { until: completeResponse })
  return { status: r.status, seen: up.seen.length > before ? up.seen.at(-1)!.url : undefined }
}

t.test('the upstream reads exactly one api_key, the real one, whatever spellings the agent sent', async (t) => {
  await fc.assert(fc.asyncProperty(query, async (q) => {
    const { status, seen } = await send(`/lax/x?${q}`)
    return status === 200 && seen !== undefined && apiKeyValues(seen).join() === REAL_KEY
  }), { numRuns: 150 })
  t.pass('150 runs')
})

t.test('require_placeholder: 403 unless every spelling carries the placeholder; else one real api_key', async (t) => {
  await fc.assert(fc.asyncProperty(query, async (q) => {
    const sent = apiKeyValues(`?${q}`)
    const { status, seen } = await send(`/strict/x?${q}`)
    if (sent.length === 0 || sent.some((v) => v !== 'sidekey')) return status === 403 && seen === undefined
    return status === 200 && seen !== undefined && apiKeyValues(seen).join() === REAL_KEY
  }), { numRuns: 150 })
  t.pass('150 runs')
})
