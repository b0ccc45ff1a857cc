import t from 'tap'
import { checkHostName, createAddressClassifier, parseToolHost } from '../../src/config/host.js'

t.test('addresses are classified so credentials never go to internal ones by IP literal', async (t) => {
  const classify = createAddressClassifier()
  const cases: Array<[string, string | undefined]> = [
    ['169.254.169.254', 'metadata'], ['100.100.100.200', 'metadata'], ['fd00:ec2::254', 'metadata'],
    ['127.0.0.1', 'loopback'], ['127.255.0.9', 'loopback'], ['::1', 'loopback'], ['::ffff:127.0.0.1', 'loopback'],
    ['10.1.2.3', 'private'], ['172.16.0.1', 'private'], ['172.31.255.255', 'private'], ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'], ['fd12::1', 'private'], ['::ffff:10.0.0.1', 'private'],
    ['169.254.1.1', 'link-local'], ['fe80::1', 'link-local'],
    ['0.0.0.0', 'unspecified'], ['::', 'unspecified'], ['224.0.0.1', 'reserved'], ['255.255.255.255', 'reserved'], ['ff02::1', 'reserved'],
    ['8.8.8.8', undefined], ['172.32.0.1', undefined], ['93.184.216.34', undefined], ['2606:4700::1111', undefined],
    ['not-an-ip', undefined],
  ]
  for (const [ip, kind] of cases) t.equal(classify(ip), kind, ip)
})

t.test('tool hosts: names, wildcards and IP literals, normalised', async (t) => {
  t.same(parseToolHost('API.Example.com.'), { ok: true, kind: 'name', host: 'api.example.com' })
  t.same(parseToolHost('*.Example.com'), { ok: true, kind: 'wildcard', host: '*.example.com' })
  t.same(parseToolHost('[2001:DB8::1]'), { ok: true, kind: 'ip', host: '2001:db8::1' })
  t.same(parseToolHost('2001:DB8:0:0:0:0:0:1'), { ok: true, kind: 'ip', host: '2001:db8::1' }, 'uncompressed IPv6 is written as requests arrive: compressed')
  t.same(parseToolHost('[::FFFF:7F00:1]'), { ok: true, kind: 'ip', host: '::ffff:7f00:1' })
  t.same(parseToolHost('localhost'), { ok: true, kind: 'name', host: 'localhost' })
  for (const bad of ['*', '*.', '*.com', 'a.*.com', '*foo.com', 'http://a.com', 'a.com/x', 'u@a.com', 'a.com:443', '-a.com', 'a..com', '', 'a b.com', '127.1', '1.2.3.0x10']) {
    t.equal(parseToolHost(bad).ok, false, JSON.stringify(bad))
  }
  t.equal(checkHostName('a'.repeat(64) + '.com') !== undefined, true, 'a label is at most 63 characters')
  t.equal(checkHostName(`${'a'.repeat(60)}.`.repeat(5) + 'com') !== undefined, true, 'a name is at most 253 characters')
  t.equal(checkHostName('1.2.3.4'), undefined, 'a full IPv4 address is not a partial one')
  t.equal(checkHostName('123.example.com'), undefined, 'numeric labels are fine before the last')
})
