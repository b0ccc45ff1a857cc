import t from 'tap'
import fc from 'fast-check'
import { basicNeedles, Scrubber, SPELLINGS, tokenNeedles, type BodyOptions } from '../../src/proxy/scrub/scrub.js'
import { leaks } from '../hardening/helpers.js'

const TOKEN = 'canary-0123456789abcdef/+x='
const scrubber = new Scrubber(basicNeedles('agent', TOKEN, 'sidekey'))

/** Runs `text` through a body scrubber cut into pieces of `size` bytes; what comes out, and whether it saw a needle. */
function streamed (s: Scrubber, text: string, size: number): { out: string, echoed: boolean } {
  const r = streamedBytes(s, Buffer.from(text), size)
  return { out: r.out.toString(), echoed: r.echoed }
}

function streamedBytes (s: Scrubber, src: Buffer, size: number, options?: BodyOptions): { out: Buffer, echoed: boolean } {
  const body = options === undefined ? s.body() : s.body(options)
  const parts: Buffer[] = []
  for (let i = 0; i < src.length; i += size) parts.push(body.push(src.subarray(i, i + size)))
  parts.push(body.end())
  return { out: Buffer.concat(parts), echoed: body.echoed }
}

/** `text` in UTF-16, little- or big-endian. */
function utf16 (text: string, order: 'le' | 'be'): Buffer {
  const le = Buffer.from(text, 'utf16le')
  return order === 'le' ? le : le.swap16()
}

t.test('every spelling the canary can take is a needle: raw, percent-encoded, base64 at each alignment, the basic value', async (t) => {
  const spellings = [TOKEN, encodeURIComponent(TOKEN), encodeURIComponent(encodeURIComponent(TOKEN))]
  for (const p of ['', 'a', 'aa']) {
    for (const enc of ['base64', 'base64url'] as const) spellings.push(Buffer.from(`${p}${TOKEN}.,`).toString(enc))
  }
  for (const form of spellings) t.same(leaks(scrubber.text(`x${form}y`), [TOKEN]), [], form)
  const basic = Buffer.from(`agent:${TOKEN}`).toString('base64')
  t.equal(scrubber.text(`Basic ${basic}`), `Basic ${Buffer.from('agent:sidekey').toString('base64')}`, 'the exact basic value becomes the placeholder\'s')
  t.equal(scrubber.text(`?k=${encodeURIComponent(TOKEN)}&z`), '?k=sidekey&z')
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

t.test('every entry of SPELLINGS is found in headers and in text bodies (UTF-8; UTF-16 by charset or byte order mark)', async (t) => {
  const placeholder = 'side/key+1'
  const secret = fc.array(fc.constantFrom(...Array.from('abcXYZ0189-_.~+/=&<>"\' %é€`*')), { minLength: 16, maxLength: 48 }).map((a) => a.join(''))
  fc.assert(fc.property(secret, fc.integer({ min: 1, max: 40 }), (key, size) => {
    const s = new Scrubber(tokenNeedles(key, placeholder))
    for (const { name, spell } of SPELLINGS) {
      const echoed = `<p>${spell(key)}</p>`
      // Two encoders can spell the key alike and the placeholder apart: either placeholder spelling is right.
      const alike = [{ spell: (v: string) => v }, ...SPELLINGS].filter((other) => other.spell(key) === spell(key))
      const expected = new Set(alike.map((other) => `<p>${other.spell(placeholder)}</p>`))
      if (!expected.has(s.text(echoed))) throw new Error(`header, ${name}: ${s.text(echoed)}`)
      const bodies: Array<[Buffer, BodyOptions | undefined, (b: Buffer) => string]> = [
        [Buffer.from(echoed), { text: true }, (b) => b.toString()],
        [utf16(echoed, 'le'), { text: true, encoding: 'utf-16le' }, (b) => b.toString('utf16le')],
        [utf16(echoed, 'be'), { text: true, encoding: 'utf-16be' }, (b) => Buffer.from(b).swap16().toString('utf16le')],
        [utf16(echoed, 'be'), { text: true, encoding: 'utf-16' }, (b) => Buffer.from(b).swap16().toString('utf16le')],
        [utf16('\ufeff' + echoed, 'le'), { text: true }, (b) => b.toString('utf16le')],
        [utf16('\ufeff' + echoed, 'be'), { text: true }, (b) => Buffer.from(b).swap16().toString('utf16le')],
      ]
      for (const [bytes, options, decode] of bodies) {
        const { out, echoed: found } = streamedBytes(s, bytes, size, options)
        if (!found || !expected.has(decode(out).replace('\ufeff', ''))) throw new Error(`body ${JSON.stringify(options)}, ${name}: ${decode(out)}`)
      }
    }
  }), { numRuns: 60 })
  t.pass('every spelling of 60 random keys found and replaced')
})

t.test('the spellings are the encoders\' own: Python quote() and quote_plus(), ASP.NET Core\'s \\u002B', async (t) => {
  const key = 'wJalr/XUt+nFEMI=K7 MD~ENG&<x>"y*é'
  const spelled = new Map(SPELLINGS.map(({ name, spell }) => [name, spell(key)]))
  // As python3 prints them: urllib.parse.quote(key) (safe='/') and quote_plus(key).
  t.equal(spelled.get("Python quote() (safe='/')"), 'wJalr/XUt%2BnFEMI%3DK7%20MD~ENG%26%3Cx%3E%22y%2A%C3%A9')
  t.equal(spelled.get('Python quote_plus()'), 'wJalr%2FXUt%2BnFEMI%3DK7+MD~ENG%26%3Cx%3E%22y%2A%C3%A9')
  // System.Text.Json's default encoder: HTML-sensitive characters, + and non-ASCII as upper-case \uXXXX.
  t.equal([...spelled.values()].find((v) => v.includes('\\u002B') && !v.includes('\\u002F')),
    'wJalr/XUt\\u002BnFEMI=K7 MD~ENG\\u0026\\u003Cx\\u003E\\u0022y*\\u00E9')
  t.ok([...spelled.values()].includes('wJalr/XUt\\u002bnFEMI=K7 MD~ENG\\u0026\\u003cx\\u003e\\u0022y*\\u00e9'), 'lower-case hex too')
})

t.test('a body that is not text is searched for what sidekey put on the wire only', async (t) => {
  const key = 'canary-0123456789abcdef/+x='
  const s = new Scrubber(basicNeedles('agent', key, 'sidekey'))
  const basic = Buffer.from(`agent:${key}`).toString('base64')
  const binary = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0xff]), Buffer.from(`${key}|${basic}|${encodeURIComponent(key)}`)])
  const { out, echoed } = streamedBytes(s, binary, 5, { text: false })
  t.ok(echoed)
  t.equal(out.subarray(6).toString(), `sidekey|${Buffer.from('agent:sidekey').toString('base64')}|${encodeURIComponent(key)}`,
    'the raw key and the exact basic value are replaced; a spelling only text would hold is left')
  t.same(out.subarray(0, 6), binary.subarray(0, 6), 'the binary bytes around them are untouched')
})

t.test('a body scrubber holds back only a tail that could still become a needle: SSE events are sent as they come', async (t) => {
  const key = 'sk-proj-0123456789abcdefXYZ'
  const body = new Scrubber(tokenNeedles(key, 'sidekey')).body()
  const event = Buffer.from('data: {"delta":"sk"}\n\n')
  t.equal(body.push(event).toString(), event.toString(), 'an event ending in a blank line goes out whole')
  t.equal(body.push(Buffer.from('data: sk-pro')).toString(), 'data: ', 'the start of the key is held')
  t.equal(body.push(Buffer.from('j-0123456789abcdefXYZ"\n\n')).toString(), 'sidekey"\n\n', 'and replaced once whole')
  t.equal(body.push(Buffer.from('data: s')).toString(), 'data: ')
  t.equal(body.push(Buffer.from('ome text')).toString(), 'some text', 'a held tail that did not become the key is released')
  t.equal(body.end().length, 0)
  t.ok(body.echoed)
})
