import t from 'tap'
import { interpolate } from '../../src/config/interpolate.js'
import { parseConfig } from '../../src/config/load.js'
import { minimal, rejectionOf } from './helpers.js'

t.test('${VAR}, ${VAR:-default}, nested defaults and $$', async (t) => {
  const env = { A: 'a', EMPTY: '' }
  t.equal(interpolate('${A}', env).value, 'a')
  t.equal(interpolate('x-${A}-y', env).value, 'x-a-y')
  t.equal(interpolate('${B:-b}', env).value, 'b')
  t.equal(interpolate('${EMPTY:-e}', env).value, 'e', 'an empty variable takes the default, like the shell')
  t.equal(interpolate('${EMPTY}', env).value, '', 'an empty variable without default is empty, not missing')
  t.equal(interpolate('${B:-${C:-${A}}}', env).value, 'a', 'defaults nest')
  t.equal(interpolate('${B:-}', env).value, '')
  t.equal(interpolate('pa$$word', env).value, 'pa$word')
  t.equal(interpolate('$${A}', env).value, '${A}', '$$ makes ${ literal')
  t.equal(interpolate('pa$word $ 5$', env).value, 'pa$word $ 5$', 'a lone $ stays')
  t.equal(interpolate('${B:-x}}', env).value, 'x}', 'a } after the expression is text')
})

t.test('missing variables and syntax errors are reported; unused defaults are not evaluated', async (t) => {
  t.same(interpolate('${A}-${B}-${A}', {}).missing, ['A', 'B'])
  t.same(interpolate('${A:-${B}}', { A: 'set' }).missing, [], 'the default is not needed')
  t.same(interpolate('${A:-${B}}', {}).missing, ['B'])
  for (const bad of ['${', '${A', '${A:-x', '${1A}', '${A-x}', '${A:-${B}']) {
    t.type(interpolate(bad, {}).error, 'string', bad)
  }
  t.same(interpolate('${A}', { A: 'secret-ish' }).envValues, ['secret-ish'])
  t.same(interpolate('${A:-d}', { }).envValues, [], 'a default is not an environment value')
})

t.test('a missing variable is a problem at its scalar, naming the variable and not any value', async (t) => {
  const text = minimal('  api:\n    match: { host: api.example.com }\n    issuer: local\n    audience: "${API_AUDIENCE}"\n',
    'listen: ${PROXY_LISTEN}\n')
  const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', { UNRELATED: 'x' }))
  t.same(lines, [
    'x.yaml:2:9: listen: environment variable PROXY_LISTEN is not set (write ${PROXY_LISTEN:-default} to give a default)',
    'x.yaml:10:15: tools.api.audience: environment variable API_AUDIENCE is not set (write ${API_AUDIENCE:-default} to give a default)',
  ])
  const bad = await rejectionOf(() => parseConfig('instance_id: ${ID\nissuers: {}\ntools: {}\n', 'x.yaml', {}))
  t.same(bad.lines, ['x.yaml:1:14: instance_id: bad ${ID...}: expected } or :-default}'])
})

t.test('interpolated plain scalars take their YAML type; quoted ones stay strings', async (t) => {
  const tool = (port: string): string => minimal(`  api:\n    match:\n      host: api.example.com\n      port: ${port}\n    issuer: local\n    plaintext: \${PLAIN:-false}\n`)
  t.equal(parseConfig(tool('${API_PORT:-8443}'), 'x.yaml', {}).tools.api?.match.port, 8443)
  t.equal(parseConfig(tool('${API_PORT}'), 'x.yaml', { API_PORT: '9443' }).tools.api?.match.port, 9443)
  t.equal(parseConfig(tool('443'), 'x.yaml', {}).tools.api?.plaintext, false)
  const { lines } = await rejectionOf(() => parseConfig(tool('"${API_PORT}"'), 'x.yaml', { API_PORT: '9443' }))
  t.same(lines, ['x.yaml:9:13: tools.api.match.port: expected number, received string'])
  const flow = await rejectionOf(() => parseConfig(minimal('  api:\n    match: { host: a.example.com, port: ${P} }\n    issuer: local\n'), 'x.yaml', { P: '1' }))
  t.match(flow.lines[0], /^x\.yaml:7:\d+: YAML: .*\(a \$\{\.\.\.\} inside \{ \} or \[ \] must be quoted, or the mapping written in block style\)$/)
  // $$ alone is not interpolation: the value keeps its plain-scalar type (a string here).
  t.equal(parseConfig('instance_id: a$$1\nissuers: {}\ntools: {}\n', 'x.yaml', {}).instance_id, 'a$1')
})

t.test('an environment value never appears in a message, even when the schema would quote it', async (t) => {
  const env = { GRACE: 'CANARY-grace', PIN: 'CANARY-pin', ISSUER: 'CANARY-issuer', HOST: 'CANARY-host.example.com/x' }
  const text = minimal('  api:\n    match: { host: "${HOST}" }\n    issuer: ${ISSUER}\n',
    'shutdown_grace: ${GRACE}\nresolve:\n  a.example.com: ${PIN}\n')
  const { error, lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', env))
  t.same(lines, [
    'x.yaml:2:17: shutdown_grace: invalid duration [hidden value] (use e.g. 500ms, 10s, 5m, 24h)',
    'x.yaml:4:18: resolve["a.example.com"]: [hidden value] is not an IP address (resolve: pins host names to addresses, like curl --resolve)',
    'x.yaml:10:20: tools.api.match.host: a host has no path; put it in match.path_prefix',
    'x.yaml:11:13: tools.api.issuer: unknown issuer [hidden value] (issuers defined: local)',
  ])
  t.notMatch(error.message, /CANARY/)
})
