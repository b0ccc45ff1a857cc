import t from 'tap'
import { queryParam, withQueryParam } from '../../src/proxy/inject/inject.js'

t.test('query injection replaces only its own parameter and keeps the others byte for byte', async (t) => {
  t.equal(withQueryParam('/s?q=a%20b&api_key=sidekey&sig=x*y~z', 'api_key', 'T$&k'), '/s?q=a%20b&sig=x*y~z&api_key=T%24%26k')
  t.equal(withQueryParam('/s?api%5Fkey=sidekey&api_key=2', 'api_key', 'T'), '/s?api_key=T', 'every spelling of the name goes')
  t.equal(withQueryParam('/s', 'api_key', 'T'), '/s?api_key=T')
  t.equal(withQueryParam('/s?api_key=sidekey', 'api_key', undefined), '/s')
  t.equal(withQueryParam('/s?a=%E0%A4%A&api_key=x', 'api_key', undefined), '/s?a=%E0%A4%A', 'a malformed escape elsewhere is left alone')
})

t.test('every spelling an upstream could read as the injected name goes, whatever separator or case', async (t) => {
  for (const spelling of ['API_KEY=x', 'Api_Key=x', '%61pi_key=x', 'api%5fKEY=x', 'api_key[]=x', 'api_key%5B%5D=x', 'api_key[0]=x',
    'api_key%5b%5d=x', 'api.key=x', 'api+key=x', 'api_key', ' api_key=x']) {
    t.equal(withQueryParam(`/s?q=1&${spelling}`, 'api_key', 'T'), '/s?q=1&api_key=T', spelling)
    t.equal(withQueryParam(`/s?q=1;${spelling};r=2`, 'api_key', 'T'), '/s?q=1;r=2&api_key=T', `;${spelling};`)
  }
  t.equal(withQueryParam('/s?api_keys=x&xapi_key=y&api=z', 'api_key', 'T'), '/s?api_keys=x&xapi_key=y&api=z&api_key=T', 'other names stay')
  t.equal(withQueryParam('/s?a=1;b=2&c=3', 'api_key', 'T'), '/s?a=1;b=2&c=3&api_key=T', 'separators kept as sent')
  t.equal(withQueryParam('/s?api_key=1;a=1', 'api_key', 'T'), '/s?a=1&api_key=T', 'no separator left in front')
})

t.test('the agent\'s values are those of every spelling, decoded', async (t) => {
  t.same(queryParam('/s?API_KEY=STOLEN&api_key=sidekey', 'api_key'), ['STOLEN', 'sidekey'])
  t.same(queryParam('/s?api_key=sidekey;api_key=STOLEN', 'api_key'), ['sidekey', 'STOLEN'])
  t.same(queryParam('/s?api_key%5B%5D=STOLEN&%61pi_key=si%64ekey&api_key=a+b', 'api_key'), ['STOLEN', 'sidekey', 'a b'])
  t.same(queryParam('/s?api_key=%FF', 'api_key'), ['\u00ff'], 'an escape that is not UTF-8 does not throw')
  t.equal(queryParam('/s?q=1', 'api_key'), undefined)
  t.equal(queryParam('/s', 'api_key'), undefined)
})
