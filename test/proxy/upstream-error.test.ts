import t from 'tap'
import { codeChain, upstreamError } from '../../src/proxy/upstream/upstream.js'

t.test('a cancelled exchange (AbortError DOMException, numeric code) maps to an upstream failure instead of throwing', async (t) => {
  const err = new DOMException('This operation was aborted', 'AbortError')
  const e = upstreamError(err)
  t.equal(e.code, 'SIDEKEY_UPSTREAM_FAILED')
  t.equal(e.status, 502)
  t.equal(codeChain(err), 'unknown')
  t.equal(upstreamError(undefined).code, 'SIDEKEY_UPSTREAM_FAILED')
  t.equal(upstreamError(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' })).code, 'SIDEKEY_UPSTREAM_TIMEOUT')
})
