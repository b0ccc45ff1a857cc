import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'

/** Absolute path of a file in the repository. */
export const repoPath = (rel: string): string => fileURLToPath(new URL(`../../${rel}`, import.meta.url))

export const readRepoFile = (rel: string): string => readFileSync(repoPath(rel), 'utf8')

/**
 * Every YAML document of a file, as plain data; throws on any YAML error. `merge` resolves `<<` merge keys,
 * which compose files use (YAML 1.1) and Kubernetes manifests here do not.
 */
export function yamlDocs (rel: string, opts: { merge?: boolean } = {}): unknown[] {
  const docs = parseAllDocuments(readRepoFile(rel), { merge: opts.merge ?? false, prettyErrors: false })
  if (!Array.isArray(docs)) throw new Error(`${rel}: not a YAML stream`)
  const out: unknown[] = []
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${rel}: ${doc.errors.map((e) => e.message).join('; ')}`)
    const value: unknown = doc.toJS()
    if (value !== null && value !== undefined) out.push(value)
  }
  return out
}

// Loosely typed access to parsed YAML: the tests assert the shape as they go.
export type Obj = Record<string, any>

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  readonly keyword: string
  /** Everything after the keyword, continuation lines joined. */
  readonly args: string
  readonly line: number
}

export interface Stage {
  readonly base: string
  readonly name: string | undefined
  readonly instructions: readonly Instruction[]
}

/**
 * A small Dockerfile reader: comments and blank lines dropped, `\` continuations joined, instructions grouped
 * into stages by FROM. Enough to check structure; no variable expansion (the Dockerfile uses no ARG).
 */
export function parseDockerfile (text: string): Stage[] {
  const instructions: Instruction[] = []
  const lines = text.split('\n')
  let pending = ''
  let start = 0
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? ''
    const trimmed = raw.trim()
    if (pending === '' && (trimmed === '' || trimmed.startsWith('#'))) continue
    if (pending !== '' && trimmed.startsWith('#')) continue // comments may sit inside a continued RUN
    if (pending === '') start = i + 1
    if (trimmed.endsWith('\\')) {
      pending += trimmed.slice(0, -1) + ' '
      continue
    }
    const full = (pending + trimmed).trim()
    pending = ''
    if (full === '') continue
    const m = /^(\S+)\s*(.*)$/s.exec(full)
    if (m === null) continue
    instructions.push({ keyword: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').replace(/\s+/g, ' ').trim(), line: start })
  }
  const stages: Array<{ base: string, name: string | undefined, instructions: Instruction[] }> = []
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
      if (m === null) throw new Error(`line ${ins.line}: cannot read FROM ${ins.args}`)
      stages.push({ base: m[1] ?? '', name: m[2], instructions: [] })
    } else {
      const current = stages.at(-1)
      if (current === undefined) throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`)
      current.instructions.push(ins)
    }
  }
  return stages
}

/** The value after `flag` in an argv list (`--config FILE`), as a container's args or command give it. */
export function flagValue (argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag)
  return i < 0 ? undefined : argv[i + 1]
}

/** The JSON (exec) form of ENTRYPOINT / CMD; undefined for the shell form. */
export function execForm (args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined
  const parsed: unknown = JSON.parse(args)
  return Array.isArray(parsed) && parsed.every((v) => typeof v === 'string') ? parsed : undefined
}

/** The sources and destination of a COPY, and its --from stage when it has one. */
export function copyParts (args: string): { from: string | undefined, sources: string[], dest: string } {
  const words = args.split(' ')
  let from: string | undefined
  const rest: string[] = []
  for (const w of words) {
    if (w.startsWith('--from=')) from = w.slice('--from='.length)
    else if (!w.startsWith('--')) rest.push(w)
  }
  const dest = rest.pop() ?? ''
  return { from, sources: rest, dest }
}

/**
 * Whether a context-relative path is excluded by .dockerignore lines (Docker's rules in brief: patterns are
 * anchored at the context root, `*` stays within a path segment, `**` spans segments, a match on a directory
 * excludes what is below it, `!` re-includes, and the last matching line wins).
 */
export function dockerIgnored (path: string, ignoreText: string): boolean {
  let ignored = false
  for (const rawLine of ignoreText.split('\n')) {
    const line = rawLine.trim()
    if (line === '' || line.startsWith('#')) continue
    const negate = line.startsWith('!')
    const pattern = (negate ? line.slice(1) : line).replace(/^\/+/, '').replace(/\/+$/, '')
    let re = ''
    for (let i = 0; i < pattern.length; i++) {
      if (pattern.startsWith('**/', i)) { re += '(?:.*/)?'; i += 2; continue }
      if (pattern.startsWith('**', i)) { re += '.*'; i += 1; continue }
      const c = pattern[i] ?? ''
      re += c === '*' ? '[^/]*' : c === '?' ? '[^/]' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
    if (new RegExp(`^${re}(?:/.*)?$`).test(path)) ignored = !negate
  }
  return ignored
}

/** Key members that only a private JWK has (EC/OKP `d`, RSA's factors): a shipped JWKS must hold none. */
export const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'] as const

/** The keys of a shipped JWKS file that carry a private member (should be none). */
export function privateKeysIn (rel: string): unknown[] {
  const jwks = JSON.parse(readRepoFile(rel)) as { keys: Array<Record<string, unknown>> }
  return jwks.keys.filter((k) => PRIVATE_JWK_MEMBERS.some((m) => m in k))
}
