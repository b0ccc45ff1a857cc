import t from 'tap'
import { basicNeedles, Scrubber, tokenNeedles } from '../../src/proxy/scrub.js'
import { leaks } from '../hardening/helpers.js'

const TOKEN = 'canary-0123456789abcdef/+x='
const scrubber = new Scrubber(basicNeedles('agent', TOKEN, 'sidekey'))

/** Runs `text` through a body scrubber cut into pieces of `size` bytes; what comes out, and whether it saw a needle. */
function streamed (s: Scrubber, text: string, size: number): { out: string, echoed: boolean } {
  const body = s.body()
  const src = Buffer.from(text)
  const parts: Buffer[] = []
  for (let i = 0; i < src.length; i += size) parts.push(body.push(src.subarray(i, i + size)))
  parts.push(body.end())
  return { out: Buffer.concat(parts).toString(), echoed: body.echoed }
}

t.test('every spelling the canary can take is a needle: raw, percent-encoded, base64 at each alignment, the basic value', async (t) => {
  const spellings = [TOKEN, encodeURIComponent(TOKEN), encodeURIComponent(encodeURIComponent(TOKEN))]
  for (const p of ['', 'a', 'aa']) {
    for (const enc of ['base64', 'base64url'] as const) spellings.push(Buffer.from(`${p}${TOKEN}.,`).toString(enc))
  }
  for (const form of spellings) t.same(leaks(scrubber.text(`x${form}y`), [TOKEN]), [], form)
  const basic = Buffer.from(`agent:${TOKEN}`).toString('base64')
  t.equal(scrubber.text(`Basic ${basic}`), `Basic ${Buffer.from('agent:sidekey').toString('base64')}`, 'the exact basic value becomes the placeholder\'s')
  t.equal(scrubber.text(`?k=${encodeURIComponent(TOKEN)}&z`), `?k=sidekey&z`)
  t.equal(scrubber.text(`?k=${encodeURIComponent(TOKEN).toLowerCase()}`), '?k=sidekey', 'lower-case hex')
  t.equal(scrubber.text('nothing here'), 'nothing here')
  t.equal(scrubber.text('$& $\''), '$& $\'', 'replacement patterns are not expanded')
})

t.test('headers: rewritten in place, names reported once, lower-cased; none when clean', async (t) => {
  const flat = ['Location', `/x/?api_key=${encodeURIComponent(TOKEN)}`, 'set-cookie', `a=${TOKEN}`, 'set-cookie', `b=${TOKEN}`, 'etag', 'abc', `x-${TOKEN}`, '1']
  t.same(scrubber.headers(flat), ['location', 'set-cookie', 'x-sidekey'])
  t.same(leaks(flat.join('\n'), [TOKEN]), [])
  t.equal(flat[7], 'abc')
  t.equal(scrubber.headers(['etag', 'abc']), undefined)
})

t.test('bodies: a needle split anywhere across chunks is still replaced; output equals the whole-text rewrite', async (t) => {
  const text = `{"error":"invalid key ${TOKEN}","again":"${encodeURIComponent(TOKEN)}","b64":"${Buffer.from('zz' + TOKEN).toString('base64')}"}`
  const whole = scrubber.text(text)
  t.same(leaks(whole, [TOKEN]), [])
  for (const size of [1, 2, 3, 7, 16, 31, 64, 1000]) {
    const r = streamed(scrubber, text, size)
    t.equal(r.out, whole, `chunks of ${size}`)
    t.ok(r.echoed)
  }
  const clean = streamed(scrubber, 'x'.repeat(5000), 333)
  t.same(clean, { out: 'x'.repeat(5000), echoed: false }, 'a clean body passes unchanged')
  t.equal(streamed(scrubber, TOKEN, TOKEN.length).out, 'sidekey', 'a chunk that is exactly the needle')
})

t.test('memory stays flat: at most the window is held back between chunks', async (t) => {
  const body = scrubber.body()
  let out = 0
  for (let i = 0; i < 1000; i++) out += body.push(Buffer.alloc(4096, 0x61)).length
  t.ok(4096 * 1000 - out <= scrubber.window, 'held back no more than the window')
  t.equal(out + body.end().length, 4096 * 1000)
})

t.test('short secrets get no derived needles; the raw one always', async (t) => {
  const s = new Scrubber(tokenNeedles('abc', 'sidekey'))
  t.equal(s.text('xabcx'), 'xsidekeyx')
  t.equal(s.window, 2)
  t.equal(new Scrubber([]).body().push(Buffer.from('abc')).toString(), 'abc', 'no needles, nothing held')
})

t.test('a lazy scrubber builds its spellings only when a string could hold one; every spelling is at least as long as its token', async (t) => {
  const alphabet = Array.from('abcXYZ019-_.~+/= %é€😀')
  for (let len = 1; len <= 90; len++) {
    const token = Array.from({ length: len }, (_, i) => alphabet[(i * 7 + len) % alphabet.length]!).join('')
    const short = tokenNeedles(token, 'sidekey').filter((n) => n.secret.length < token.length)
    if (short.length > 0) t.fail(`a spelling of a ${len}-unit token is shorter than it`)
  }
  let built = 0
  const token = 'tok_' + 'q'.repeat(60)
  const lazy = new Scrubber(() => { built++; return tokenNeedles(token, 'sidekey') }, token.length)
  t.same(lazy.headers(['content-type', 'application/json', 'date', 'Fri, 04 Dec 2026 19:00:00 GMT']), undefined)
  t.equal(built, 0, 'short header values: nothing built')
  const flat = ['x-echo', `seen ${token}`]
  t.same(lazy.headers(flat), ['x-echo'])
  t.equal(flat[1], 'seen sidekey', 'a long one is scrubbed')
  t.ok(lazy.window >= token.length - 1, 'the body window covers the longest spelling')
  t.equal(built, 1, 'built once')
})

t.test('a key JSON or HTML encoders escape is found as they write it into a body, and replaced by the placeholder', async (t) => {
  const key = 'wJalr/XUt+nFEMI=K7MDENG&<x>"y'
  const s = new Scrubber(tokenNeedles(key, 'side/key'))
  // What real encoders write for `key`: JavaScript and Python JSON, PHP json_encode (`\/`), Go encoding/json
  // (`\u0026` for &, <, >), escape-html and PHP htmlspecialchars, OWASP ESAPI (lower-case hex) and decimal.
  const written = [
    JSON.stringify({ key }),
    JSON.stringify({ key }).replace(/\//g, '\\/'),
    JSON.stringify({ key }).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`),
    `<p>${key.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')}</p>`,
    `<p>${key.replace(/[^A-Za-z0-9,._ -]/g, (c) => `&#x${c.charCodeAt(0).toString(16)};`)}</p>`,
    `<p>${key.replace(/[^A-Za-z0-9,._ -]/g, (c) => `&#x${c.charCodeAt(0).toString(16).toUpperCase()};`)}</p>`,
    `<p>${key.replace(/[^A-Za-z0-9,._ -]/g, (c) => `&#${c.charCodeAt(0)};`)}</p>`,
  ]
  for (const text of written) {
    const { out, echoed } = streamed(s, text, 7)
    t.ok(echoed, `found: ${text}`)
    t.notOk(out.includes('K7MDENG') || out.includes('nFEMI'), `no part of the key is left: ${out}`)
    t.match(out, /side/, 'the placeholder is in its place')
  }
  const json = streamed(s, JSON.stringify({ key }).replace(/\//g, '\\/'), 5).out
  t.equal(json, '{"key":"side\\/key"}', 'the placeholder is spelled the way the key was: still valid JSON for the agent')
  t.same(JSON.parse(json), { key: 'side/key' })
  t.equal(tokenNeedles('eyJhbGciOi.eyJzdWIi.sig-_x0123456789', 'sidekey').filter((n) => n.secret.includes('&') || n.secret.includes('\\')).length, 0,
    'a JWT has no escaped spellings (nothing added to scan for)')
})
