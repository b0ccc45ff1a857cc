// One broken config per Threat model, faults, bad config case: each must be refused with exactly one problem, at the
// position of the offending key or value, naming the key, in the `FILE:LINE:COL: key: message` form.
import t from 'tap'
import { loadConfigFile } from '../../src/config/load.js'
import { fixture, rejectionOf } from './helpers.js'

const cases: Array<[name: string, pos: string, key: string, message: RegExp]> = [
  ['bad-yaml.yaml', '8:5', 'YAML', /flow map .* end with a \}/],
  ['duplicate-key.yaml', '10:5', 'YAML', /duplicate key/],
  ['unknown-key-top.yaml', '2:1', 'listn', /^unknown key \(did you mean "listen"\?\)$/],
  ['unknown-key-nested.yaml', '9:7', 'tools.api.match.pathprefix', /^unknown key \(did you mean "path_prefix"\?\)$/],
  ['duplicate-host.yaml', '17:13', 'tools.api-again.match.host', /^tool "api" already matches the same host, port and path_prefix/],
  ['star-destination.yaml', '8:13', 'tools.everything.match.host', /^"\*" would send this credential to every destination/],
  ['private-ip-destination.yaml', '8:13', 'tools.metadata.match.host', /^"169\.254\.169\.254" is a metadata address;.*host name and pin it in resolve:/],
  ['plaintext-unpinned.yaml', '11:16', 'tools.api.plaintext', /in clear; it is only allowed when match\.host is pinned to a loopback address in resolve:/],
  ['plaintext-pinned-remote.yaml', '12:16', 'tools.api.plaintext', /pinned to a loopback address/],
  ['dangling-issuer.yaml', '9:13', 'tools.api.issuer', /^unknown issuer "corp" \(issuers defined: local\)$/],
  ['bad-port.yaml', '9:13', 'tools.api.match.port', /<=65535/],
  ['bad-duration.yaml', '5:10', 'issuers.local.ttl', /^invalid duration "10 minutes"/],
  ['missing-client-secret.yaml', '7:18', 'issuers.corp.auth_method', /^auth_method client_secret_post needs client_secret_file \(or client_secret\)$/],
]

for (const [name, pos, key, message] of cases) {
  t.test(name, async (t) => {
    const file = fixture(name)
    const { error, lines } = await rejectionOf(() => loadConfigFile(file, {}))
    t.equal(error.code, 'SIDEKEY_CONFIG_INVALID')
    t.equal(lines.length, 1, 'exactly one problem')
    const prefix = `${file}:${pos}: ${key}: `
    t.equal(lines[0]?.slice(0, prefix.length), prefix, 'file, line, column and key')
    t.match(lines[0]?.slice(prefix.length), message)
  })
}

t.test('the well-formed base of these fixtures loads', async (t) => {
  const cfg = await loadConfigFile(fixture('base-ok.yaml'), {})
  t.equal(cfg.tools.api?.issuer, 'local')
})

t.test('no secret or environment value appears in any message of a bad config', async (t) => {
  const file = fixture('secret-in-bad-config.yaml')
  const { error, lines } = await rejectionOf(() => loadConfigFile(file, { HELPER_TIMEOUT: 'CANARY-env-duration' }))
  t.ok(lines.length >= 4, 'the config has several problems and all are reported')
  t.match(lines.join('\n'), /issuers\.helper\.timeout: invalid duration/, 'the env-derived value is still reported on')
  const everything = [...lines, error.message, JSON.stringify(error), String(error.stack)].join('\n')
  for (const canary of ['s3cr3t-CANARY-value', 'CANARY-param-token', 'CANARY-exec-password', 'CANARY-env-duration']) {
    t.notOk(everything.includes(canary), `${canary} does not leak`)
  }
})
