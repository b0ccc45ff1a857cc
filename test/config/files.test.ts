import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { rejectionOf } from './helpers.js'
import { cli } from '../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'sidekey-files-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const present = join(dir, 'secret')
writeFileSync(present, 'a-secret\n', { mode: 0o600 })
const script = join(dir, 'helper.sh')
writeFileSync(script, '#!/bin/sh\necho token\n')
chmodSync(script, 0o755)
const plain = join(dir, 'not-executable.sh')
writeFileSync(plain, '#!/bin/sh\n')

/** One issuer per line, so a problem's line names the case. */
const config = (issuers: readonly string[], head = ''): string =>
  ['instance_id: t', ...(head === '' ? [] : [head]), 'issuers:', ...issuers.map((i) => `  ${i}`), 'tools: {}', ''].join('\n')

t.test('every file a config names must be readable, at the YAML position of the value that names it', async (t) => {
  const text = config([
    `gone: { type: file, path: ${join(dir, 'nope')} }`,
    `here: { type: file, path: ${present} }`,
    `cc: { type: oauth2_client_credentials, token_url: "https://idp.example.com/t", client_id: a, client_secret_file: ${join(dir, 'missing')} }`,
    `tx: { type: oauth2_token_exchange, token_url: "https://idp.example.com/t", subject_token_file: ${dir} }`,
    `ex: { type: exec, command: [${join(dir, 'no-such-helper')}] }`,
    `ex2: { type: exec, command: [${plain}] }`,
    `ex3: { type: exec, command: [${script}] }`,
    'ex4: { type: exec, command: [sidekey-helper-that-is-not-installed] }',
  ], `upstream_ca_file: ${join(dir, 'ca.pem')}`)
  const { lines } = await rejectionOf(() => parseConfig(text, 'x.yaml', { PATH: '/usr/bin:/bin' }, { files: true }))
  // Each problem points at the value that names the file: its line, and the column where the value starts.
  const at = (value: string, what: string): string => {
    const row = text.split('\n').findIndex((l) => l.includes(value))
    return `x.yaml:${row + 1}:${text.split('\n')[row]!.indexOf(value) + 1}: ${what}: ${JSON.stringify(value)}`
  }
  t.same(lines, [
    `${at(join(dir, 'ca.pem'), 'upstream_ca_file')}: no such file`,
    `${at(join(dir, 'nope'), 'issuers.gone.path')}: no such file`,
    `${at(join(dir, 'missing'), 'issuers.cc.client_secret_file')}: no such file`,
    `${at(`${dir} }`, 'issuers.tx.subject_token_file').replace(' }"', '"')}: is a directory, not a file`,
    // A command line may carry secrets: like every value under a secret-bearing key, it is not repeated.
    `${at(join(dir, 'no-such-helper'), 'issuers.ex.command[0]').replace(/"[^"]*"$/, '[hidden value]')}: no such file`,
    `${at(plain, 'issuers.ex2.command[0]').replace(/"[^"]*"$/, '[hidden value]')}: is not executable`,
    `${at('sidekey-helper-that-is-not-installed', 'issuers.ex4.command[0]').replace(/"[^"]*"$/, '[hidden value]')}: not found on PATH`,
  ])
  // Without the option (run, and check --no-files), a missing file is not a config error: it may be mounted later.
  t.ok(parseConfig(text, 'x.yaml', { PATH: '/usr/bin:/bin' }))
})

t.test('sidekey check fails on a missing secret file (exit 2, FILE:LINE:COL); --no-files skips the files', async (t) => {
  const file = join(dir, 'cfg.yaml')
  writeFileSync(file, config([`gh: { type: file, path: ${join(dir, 'github-token')} }`], `ca: { dir: ${join(dir, 'ca')} }`))
  const [check, away] = await Promise.all([cli(['check', '--config', file]), cli(['check', '--no-files', '--config', file])])
  t.equal(check.code, 2, check.stdout + check.stderr)
  t.match(check.stdout, `${file}:4:27: issuers.gh.path: "${join(dir, 'github-token')}": no such file`)
  t.equal(away.code, 0, away.stdout + away.stderr)
  t.match(away.stdout, `${file}: ok`)
})
