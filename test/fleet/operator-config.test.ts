import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfigFile, loadOperatorConfigFile } from '../../src/config/load.js'
import { rejectionOf } from '../config/helpers.js'

/**
 * The operator's `sidekey fleet` verbs read a config with `fleet:` alone; a sidecar's whole config works for them
 * too. `sidekey check` and `run` still want a whole sidecar config.
 */
const EXAMPLE = fileURLToPath(new URL('../../config/examples/operator/fleet-operator.yaml', import.meta.url))

t.test('the shipped operator example: fleet: alone, read by the fleet verbs, refused as a sidecar', async (t) => {
  const cfg = await loadOperatorConfigFile(EXAMPLE, {})
  t.match(cfg.fleet, {
    bucket: 'sidekey',
    operator_keys: './ops/operators.jwks',
    nats: {
      servers: ['nats://nats.sidekey.svc:4222'],
      creds_file: './ops/operator.creds',
      tls: { ca_file: './ops/nats-ca.pem' },
    },
  })
  const asSidecar = await rejectionOf(() => loadConfigFile(EXAMPLE, {}))
  const text = asSidecar.lines.join('\n')
  for (const key of ['instance_id', 'issuers', 'tools']) {
    t.match(text, new RegExp(`${key}: required key is missing`), `check still wants ${key}`)
  }
})

t.test('a sidecar config works for the fleet verbs; only its fleet: section is read', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'sidecar.yaml')
  // A tool's secret from a variable the operator's shell does not have, and a tool mistake: neither stops a lock.
  writeFileSync(file, `instance_id: agent-0
issuers:
  mounted: { type: file, path: /run/secrets/key }
  helper: { type: exec, command: [/bin/x, "\${HELPER_TOKEN}"] }
tools:
  api: { match: { host: api.test }, issuer: mounted, colour: blue }
fleet:
  nats: { servers: [nats://127.0.0.1:4222] }
  operator_keys: /etc/sidekey/operators.jwks
`)
  const cfg = await loadOperatorConfigFile(file, {})
  t.match(cfg.fleet, { operator_keys: '/etc/sidekey/operators.jwks', nats: { servers: ['nats://127.0.0.1:4222'] } })
  const asSidecar = await rejectionOf(() => loadConfigFile(file, {}))
  t.match(asSidecar.lines.join('\n'), /colour/, 'the sidecar load still names the tool mistake')
})

t.test('mistakes in the operator config are named with their position', async (t) => {
  const dir = t.testdir({})
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, `fleet:
  nats: { servers: [nats://n:4222], token_file: "\${NATS_TOKEN_FILE}" }
  operator_key: /k
fleeet: {}
`)
  const { lines } = await rejectionOf(() => loadOperatorConfigFile(bad, {}))
  const text = lines.join('\n')
  t.match(text, /bad\.yaml:2:\d+: .*NATS_TOKEN_FILE/, 'a missing variable inside fleet: is a problem')
  t.match(text, /bad\.yaml:3:\d+: fleet\.operator_key: unknown key \(did you mean "operator_keys"\?\)/)
  t.match(text, /bad\.yaml:4:\d+: fleeet: unknown key \(did you mean "fleet"\?\)/)
  const none = join(dir, 'none.yaml')
  writeFileSync(none, 'instance_id: a\nissuers: {}\ntools: {}\n')
  const noFleet = await rejectionOf(() => loadOperatorConfigFile(none, {}))
  t.match(noFleet.lines.join('\n'), /fleet: required key is missing/)
})
