import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative, sep } from 'node:path'
import t from 'tap'

/**
 * The allowed edges between src/'s top-level folders (and its root files: cli, app, errors, demo). Each capability
 * talks to the others through a narrow interface, observers never import the request path, and the offline
 * readers of the trail (reports/) are reached only from the CLI. A new edge is a design decision: add it here
 * with the reason, in the same change.
 */
const ALLOWED: Record<string, readonly string[]> = {
  '(root)': ['*'],
  admin: ['(root)', 'approvals', 'audit', 'config', 'credentials', 'util'],
  anomaly: ['audit', 'secrets', 'util'],
  approvals: ['(root)', 'admin', 'audit', 'config', 'mcp', 'net', 'secrets', 'util'],
  audit: ['(root)', 'anomaly', 'secrets', 'util'],
  budget: ['(root)', 'config', 'util'],
  // The CLI's verbs: wiring from argv to each folder's own command function, loaded lazily per verb.
  commands: ['(root)', 'admin', 'approvals', 'config', 'credentials', 'fleet', 'proxy', 'reports', 'tls', 'util'],
  config: ['(root)', 'anomaly', 'net', 'util'],
  credentials: ['(root)', 'audit', 'config', 'net', 'tracing', 'util'],
  // The fleet implements the request path's LockView, the budget's lease store and the approvals' signed release:
  // it imports their interfaces.
  fleet: ['(root)', 'approvals', 'audit', 'budget', 'config', 'credentials', 'proxy', 'util'],
  inventory: ['(root)', 'audit', 'secrets', 'util'],
  mcp: ['(root)', 'config'],
  metrics: ['audit', 'credentials', 'util'],
  net: ['(root)'],
  proxy: ['(root)', 'approvals', 'audit', 'budget', 'config', 'credentials', 'inventory', 'mcp', 'net', 'secrets', 'tls', 'tracing', 'util'],
  // verify --fleet reads the checkpoints the fleet publishes; scopes judges MCP names with the policy's own matcher.
  reports: ['(root)', 'audit', 'config', 'fleet', 'mcp', 'net', 'secrets', 'util'],
  secrets: ['util'],
  tls: ['(root)', 'net', 'util'],
  tracing: ['(root)', 'audit', 'config', 'util'],
  util: [],
}

const src = join(import.meta.dirname, '..', '..', 'src')
const folderOf = (file: string): string => {
  const parts = relative(src, file).split(sep)
  return parts.length === 1 ? '(root)' : parts[0]!
}

function * sources (dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) yield * sources(join(dir, e.name))
    else if (e.name.endsWith('.ts')) yield join(dir, e.name)
  }
}

t.test('src/ folders import only along the allowed edges', async (t) => {
  const seen = new Set<string>()
  const outside: string[] = []
  for (const file of sources(src)) {
    const from = folderOf(file)
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const to = folderOf(normalize(join(dirname(file), m[1]!)))
      if (to === from) continue
      seen.add(`${from} -> ${to}`)
      const allowed = ALLOWED[from] ?? []
      if (!allowed.includes('*') && !allowed.includes(to)) outside.push(`${relative(src, file)} imports ${m[1]!} (${from} -> ${to})`)
    }
  }
  t.same(outside, [], 'no import outside the allowed edges')
  t.ok(seen.size > 10, `the graph was read (${seen.size} edges)`)
  for (const folder of readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory())) {
    t.ok(ALLOWED[folder.name] !== undefined, `src/${folder.name}/ has its edges listed here`)
  }
})

t.test('the README names every folder of src/ in its architecture section', async (t) => {
  const readme = readFileSync(join(src, '..', 'README.md'), 'utf8')
  const architecture = readme.slice(readme.indexOf('## Architecture'))
  for (const folder of readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory())) {
    t.match(architecture, `${folder.name}/`, `README's architecture names src/${folder.name}/`)
  }
})
