// The reference a user reads (docs/configuration.md) and the schema an editor reads (config/sidekey.schema.json)
// are checked against the code's one schema, so neither can fall behind it.
import t from 'tap'
import { readFile, readdir } from 'node:fs/promises'
import { configJsonSchemaText, schemaKeys, SCHEMA_FILE } from '../../src/config/json-schema.js'
import { cli } from '../helpers/cli.js'

const root = new URL('../../', import.meta.url)

t.test('config/sidekey.schema.json is what the code generates', async (t) => {
  const onDisk = await readFile(new URL(SCHEMA_FILE, root), 'utf8')
  t.equal(onDisk, configJsonSchemaText(), 'regenerate with: node dist/cli.js schema > config/sidekey.schema.json')
  const printed = await cli(['schema'])
  t.equal(printed.code, 0)
  t.equal(printed.stdout, onDisk, '`sidekey schema` prints the same text')
})

t.test('docs/configuration.md has a row for every key, with its default', async (t) => {
  const doc = await readFile(new URL('docs/configuration.md', root), 'utf8')
  const rows = new Map<string, string>()
  for (const line of doc.split('\n')) {
    const m = /^\| `([^`]+)` \|(.*)$/.exec(line)
    if (m !== null) rows.set(m[1]!, m[2]!)
  }
  const keys = schemaKeys()
  t.ok(keys.length > 100)
  for (const key of keys) {
    const row = rows.get(key.path)
    if (row === undefined) {
      t.fail(`docs/configuration.md has no row for \`${key.path}\``)
      continue
    }
    // An issuer key's default differs per issuer type, and an object's default is its keys' defaults: both are
    // described in words. A scalar default must be in the row's default cell as written in YAML.
    const d = key.default
    if (key.path.startsWith('issuers.') || d === undefined || typeof d === 'object') continue
    const cell = row.split('|')[0]!
    t.ok(cell.includes(`\`${String(d)}\``), `${key.path}: default ${String(d)} is stated (cell:${cell})`)
  }
  const known = new Set(keys.map((k) => k.path))
  for (const path of rows.keys()) t.ok(known.has(path), `docs/configuration.md row \`${path}\` is a key the schema accepts`)
})

t.test('every shipped YAML config points editors at the schema', async (t) => {
  const files = ['config/sidekey.yaml', 'deploy/compose/sidekey.yaml',
    ...(await readdir(new URL('config/examples/', root))).filter((f) => f.endsWith('.yaml')).map((f) => `config/examples/${f}`)]
  for (const f of files) {
    const first = (await readFile(new URL(f, root), 'utf8')).split('\n')[0]
    const depth = f.split('/').length - 1
    t.equal(first, `# yaml-language-server: $schema=${'../'.repeat(depth)}${SCHEMA_FILE}`, f)
  }
})
