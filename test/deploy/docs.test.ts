// The deploy docs name alerts, files and routes that other parts of the repository define; when one of those
// is renamed, the docs must follow, or an operator is sent looking for something that does not exist.
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
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

// Users have only the repository: a document that cites a file must cite one that is in it. Relative links
// resolve against the document's folder; a bare `NAME.md` against the folder or the repository root.
t.test('every file the user docs cite exists in the repository', async (t) => {
  const docs = ['README.md', ...readdirSync(repoPath('docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
    ...readdirSync(repoPath('config')).filter((f) => f.endsWith('.yaml')).map((f) => `config/${f}`),
    ...readdirSync(repoPath('config/examples')).filter((f) => f.endsWith('.yaml')).map((f) => `config/examples/${f}`)]
  for (const doc of docs) {
    const body = readRepoFile(doc)
    const dir = dirname(doc)
    for (const m of body.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
      const target = m[1] as string
      if (/^[a-z]+:/i.test(target)) continue
      t.ok(existsSync(repoPath(join(dir, target))), `${doc}: link ${target}`)
    }
    for (const m of body.matchAll(/(?<![\w/.-])((?:[\w.-]+\/)*[\w.-]+\.md)\b/g)) {
      const name = m[1] as string
      t.ok(existsSync(repoPath(join(dir, name))) || existsSync(repoPath(name)), `${doc}: mentions ${name}`)
    }
    // The project's internal notes, cited by section ("threat model: a log reader"), are not shipped either.
    t.notMatch(body, /\b(?:RELIABILITY|SPEC|STYLE)\b/, `${doc}: no internal notes cited`)
  }
})
