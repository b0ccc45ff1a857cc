// The deploy docs name alerts, files and routes that other parts of the repository define; when one of those
// is renamed, the docs must follow, or an operator is sent looking for something that does not exist.
import { existsSync } from 'node:fs'
import t from 'tap'
import { readRepoFile, repoPath, yamlDocs } from './helpers.js'
import type { Obj } from './helpers.js'

const DOCS = ['docs/operations.md', 'docs/agents.md']
const text = new Map(DOCS.map((d) => [d, readRepoFile(d)]))

t.test('every alert the operations doc names is a rule in deploy/prometheus/alerts.yaml, and every rule is named', async (t) => {
  const rules = (yamlDocs('deploy/prometheus/alerts.yaml')[0] as Obj).groups
    .flatMap((g: Obj) => g.rules as Obj[]).map((r: Obj) => r.alert as string).filter(Boolean) as string[]
  const named = new Set([...(text.get('docs/operations.md') ?? '').matchAll(/`(Sidekey[A-Za-z]+)`/g)].map((m) => m[1] as string))
  t.ok(named.size > 0)
  for (const alert of named) t.ok(rules.includes(alert), `${alert} exists`)
  for (const rule of rules) t.ok(named.has(rule), `${rule} is explained`)
})

t.test('every repository path the docs mention exists', async (t) => {
  for (const [doc, body] of text) {
    const paths = new Set([...body.matchAll(/`((?:deploy|config|docs|src)\/[\w./-]+)`/g)].map((m) => m[1] as string))
    for (const p of paths) t.ok(existsSync(repoPath(p)), `${doc}: ${p}`)
    // Example configs are also referred to by their bare file name.
    for (const m of body.matchAll(/`([\w-]+\.yaml)`/g)) {
      const name = m[1] as string
      const known = ['config/examples/', 'deploy/kubernetes/', 'deploy/compose/', 'deploy/prometheus/'].some((dir) => existsSync(repoPath(dir + name)))
      t.ok(known, `${doc}: ${name}`)
    }
  }
})
