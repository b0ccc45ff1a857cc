import t from 'tap'
import fc from 'fast-check'
import { Scrubber, tokenNeedles, type BodyOptions } from '../../src/proxy/scrub/scrub.js'

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg'
const scrubber = new Scrubber(tokenNeedles(TOKEN, 'sidekey'))
const KINDS: BodyOptions[] = [
  { text: true }, { text: false }, { text: true, encoding: 'utf-16' }, { text: true, encoding: 'utf-16le' },
]

t.test('a whole body scrubbed in one piece sends what push then end send, and tells the same echo', async (t) => {
  // Bodies of token parts, whole tokens, its base64 and URL spellings, byte order marks and filler, in any order.
  const piece = fc.constantFrom(TOKEN, TOKEN.slice(0, 20), TOKEN.slice(30), Buffer.from(`x${TOKEN}`).toString('base64'),
    encodeURIComponent(`"${TOKEN}"`), '\ufeff', '\ufffe', 'ab', '{"k":"', '"}\n', 'é')
  const body = fc.tuple(fc.array(piece, { maxLength: 12 }), fc.constantFrom<BufferEncoding>('utf8', 'utf16le'))
    .map(([parts, encoding]) => Buffer.from(parts.join(''), encoding))
  fc.assert(fc.property(body, fc.constantFrom(...KINDS), (bytes, kind) => {
    const streamed = scrubber.body(kind)
    const expected = Buffer.concat([streamed.push(bytes), streamed.end()])
    const whole = scrubber.body(kind)
    const got = whole.whole!(bytes)
    return got.equals(expected) && whole.echoed === streamed.echoed
  }), { numRuns: 2000 })
  const once = scrubber.body({ text: true })
  t.equal(once.whole!(Buffer.from(`token=${TOKEN}!`)).toString(), 'token=sidekey!')
  t.ok(once.echoed)
})
