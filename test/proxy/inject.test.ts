import t from 'tap'
import { withQueryParam } from '../../src/proxy/inject.js'

t.test('query injection replaces only its own parameter and keeps the others byte for byte', async (t) => {
  t.equal(withQueryParam('/s?q=a%20b&api_key=sidekey&sig=x*y~z', 'api_key', 'T$&k'), '/s?q=a%20b&sig=x*y~z&api_key=T%24%26k')
  t.equal(withQueryParam('/s?api%5Fkey=sidekey&api_key=2', 'api_key', 'T'), '/s?api_key=T', 'every spelling of the name goes')
  t.equal(withQueryParam('/s', 'api_key', 'T'), '/s?api_key=T')
  t.equal(withQueryParam('/s?api_key=sidekey', 'api_key', undefined), '/s')
  t.equal(withQueryParam('/s?a=%E0%A4%A&api_key=x', 'api_key', undefined), '/s?a=%E0%A4%A', 'a malformed escape elsewhere is left alone')
})
