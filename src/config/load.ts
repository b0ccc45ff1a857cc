import { open } from 'node:fs/promises'
import type * as z from 'zod'
import { config, defaultScrubBody, defaultStrip, operatorConfig } from './schema.js'
import type { Config, OperatorConfig, ToolConfig } from './schema.js'
import { ConfigError } from './config-error.js'
import type { ConfigProblem } from './config-error.js'
import { crossCheck, normalizeHostName } from './cross-check.js'
import { fileProblems } from './files.js'
import { pathKey, readYaml } from './yaml-source.js'
import type { KeyPath, Position, RawProblem, SourceTree } from './yaml-source.js'

export { ConfigError, formatProblems } from './config-error.js'
export type { ConfigProblem } from './config-error.js'

/** Stands in for a value that came from the environment or sits under a secret-bearing key. */
const HIDDEN = '[hidden value]'

/** A config file is a page of YAML; anything far larger is a mistake (or an attack on the parser). */
const MAX_BYTES = 1024 * 1024

export interface ParseOptions {
  /** Also check that every file the config names can be read (and an exec issuer's command run): `sidekey check`. */
  readonly files?: boolean
}

/**
 * Reads, interpolates, validates and cross-checks a config file. All problems are collected and thrown
 * together as one ConfigError; the result is deep-frozen, with every default filled in.
 *
 * File paths in the config (ca.dir, *_file, ...) are kept as written: relative ones resolve against the
 * process's working directory, as they would on a command line, not against the config file's folder.
 *
 * @example
 *   const cfg = await loadConfigFile('config/sidekey.yaml')   // throws ConfigError
 */
export async function loadConfigFile (
  file: string, env: NodeJS.ProcessEnv = process.env, opts: ParseOptions = {}
): Promise<Readonly<Config>> {
  return parseConfig(await readConfigText(file), file, env, opts)
}

/**
 * The config of an operator's `sidekey fleet` verbs: a file with `fleet:` alone, or a sidecar's whole config, of
 * which only `fleet:` is read and checked (a missing variable or a mistake elsewhere does not stop a lock).
 *
 * @example
 *   const { fleet } = await loadOperatorConfigFile('operator.yaml')   // throws ConfigError
 */
export async function loadOperatorConfigFile (file: string, env: NodeJS.ProcessEnv = process.env):
Promise<Readonly<OperatorConfig>> {
  const text = await readConfigText(file)
  const tree = readYaml(text, env)
  const inFleet = (p: RawProblem): boolean => p.path.length === 0 || p.path[0] === 'fleet'
  const { found, add, show } = collector(tree)
  const result = validate(operatorConfig, tree, add, show)
  const problems = [...(tree.data === undefined ? tree.problems : tree.problems.filter(inFleet)), ...found]
  if (problems.length > 0 || result === undefined) throw new ConfigError(file, finish(file, problems, tree.secrets))
  return deepFreeze(result)
}

/** The file's text, refused past MAX_BYTES or when unreadable (as one problem at its start). */
async function readConfigText (file: string): Promise<string> {
  let text: string
  try {
    const handle = await open(file, 'r')
    try {
      const { size } = await handle.stat()
      if (size > MAX_BYTES) throw new ConfigError(file, [atStart(file, `the file is larger than ${MAX_BYTES} bytes`)])
      text = await handle.readFile('utf8')
    } finally {
      await handle.close()
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError(file, [atStart(file, `cannot read the config file (${describeFsError(err)})`)])
  }
  return text
}

/**
 * Like loadConfigFile, for YAML already in memory; `file` is only used to name positions in problems.
 *
 * @example parseConfig('instance_id: a\nissuers: {}\ntools: {}\n', 'inline.yaml')
 */
export function parseConfig (
  text: string, file: string, env: NodeJS.ProcessEnv = process.env, opts: ParseOptions = {}
): Readonly<Config> {
  if (text.length > MAX_BYTES) {
    throw new ConfigError(file, [atStart(file, `the file is larger than ${MAX_BYTES} bytes`)])
  }
  const tree = readYaml(text, env)
  const { found, add, show } = collector(tree)

  const result = validate(config, tree, add, show)
  if (tree.data !== undefined) {
    crossCheck(tree.data, { problem: add, show })
    if (opts.files === true) {
      for (const p of fileProblems(tree.data, env)) add(p.path, `${show(p.path, p.file)}: ${p.fault}`)
    }
  }

  const problems = [...tree.problems, ...found]
  if (problems.length > 0 || result === undefined) throw new ConfigError(file, finish(file, problems, tree.secrets))
  return deepFreeze(complete(result))
}

type Issue = z.core.$ZodIssue
type AddProblem = (path: KeyPath, message: string, where?: 'key' | 'value') => void
type ShowValue = (path: KeyPath, value: string) => string

/** The tree's data by `schema`, or undefined with every problem added at its position. */
function validate<S extends z.ZodType> (
  schema: S, tree: SourceTree, add: AddProblem, show: ShowValue
): z.output<S> | undefined {
  if (tree.data === undefined) return undefined
  // Parsed once per start (and per reload): zod's default compiles a fast path with new Function for each object
  // schema first, which costs more than the one parse it would speed up.
  const parsed = schema.safeParse(tree.data, { jitless: true })
  if (parsed.success) return parsed.data
  for (const issue of parsed.error.issues) zodProblem(issue, tree, add, show)
  return undefined
}

/** Where schema problems are gathered, each at its YAML position; `show` quotes a value unless it is hidden. */
function collector (tree: SourceTree): { found: RawProblem[], add: AddProblem, show: ShowValue } {
  const found: RawProblem[] = []
  // A value the YAML stage already faulted (e.g. a missing variable) would only draw a second, confusing complaint.
  const faulted = new Set(tree.problems.map((p) => pathKey(p.path)))
  const add = (path: KeyPath, message: string, where: 'key' | 'value' = 'value'): void => {
    if (!faulted.has(pathKey(path))) found.push({ path, pos: positionOf(tree, path, where), message })
  }
  const show = (path: KeyPath, value: string): string =>
    tree.nodes.get(pathKey(path))?.hidden === true ? HIDDEN : JSON.stringify(value)
  return { found, add, show }
}

function zodProblem (
  issue: Issue, tree: SourceTree, add: (path: KeyPath, message: string, where?: 'key' | 'value') => void,
  show: (path: KeyPath, value: string) => string
): void {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol')
  const raw = valueAt(tree.data, path)
  switch (issue.code) {
    case 'unrecognized_keys':
      for (const key of issue.keys) {
        add([...path, key], `unknown key${suggest(key, expectedKeys(tree.data, path))}`, 'key')
      }
      return
    case 'invalid_key':
      add(path, issue.issues[0]?.message ?? 'invalid key', 'key')
      return
    case 'invalid_union': {
      const options = (issue as { options?: unknown[] }).options
      if (Array.isArray(options) && typeof raw === 'string') {
        add(path, `unknown ${String(path[path.length - 1])} ${show(path, raw)}; expected one of ${options.join(', ')}`)
        return
      }
      break
    }
    case 'invalid_type':
      if (!tree.nodes.has(pathKey(path))) {
        add(path, 'required key is missing', 'key')
        return
      }
      break
  }
  let message = issue.message.replace(/^Invalid input: /, '')
  message = message.charAt(0).toLowerCase() + message.slice(1)
  // Schema messages may quote the value (durations do); a hidden one is cut out here, and scrubbed again later.
  if (tree.nodes.get(pathKey(path))?.hidden === true && typeof raw === 'string') {
    message = message.split(JSON.stringify(raw)).join(HIDDEN)
    if (raw.length >= 4) message = message.split(raw).join(HIDDEN)
  }
  add(path, message)
}

function valueAt (data: unknown, path: KeyPath): unknown {
  let v = data
  for (const seg of path) {
    if (typeof v !== 'object' || v === null || !Object.hasOwn(v, seg)) return undefined
    v = (v as Record<string | number, unknown>)[seg]
  }
  return v
}

/** The position of a path's key or value; for a missing key, its parent's. */
function positionOf (tree: SourceTree, path: KeyPath, where: 'key' | 'value'): Position {
  const exact = tree.nodes.get(pathKey(path))
  if (exact !== undefined) return where === 'key' ? exact.key ?? exact.value : exact.value
  for (let n = path.length - 1; n >= 0; n--) {
    const parent = tree.nodes.get(pathKey(path.slice(0, n)))
    if (parent !== undefined) return parent.key ?? parent.value
  }
  return { line: 1, col: 1 }
}

/** Keys the schema accepts at `path` (following discriminated unions by the raw `type`), for "did you mean". */
function expectedKeys (data: unknown, path: KeyPath): string[] {
  type Def = {
    type: string,
    shape?: Record<string, unknown>,
    innerType?: unknown,
    in?: unknown,
    valueType?: unknown,
    options?: unknown[],
    discriminator?: string
  }
  const defOf = (s: unknown): Def => (s as { _zod: { def: Def } })._zod.def
  const unwrap = (s: unknown): unknown => {
    for (let d = defOf(s); ; d = defOf(s)) {
      if (d.innerType !== undefined) s = d.innerType
      else if (d.type === 'pipe') s = d.in
      else return s
    }
  }
  const shapeOf = (s: unknown, value: unknown): Record<string, unknown> | undefined => {
    const d = defOf(unwrap(s))
    if (d.type === 'object') return d.shape
    if (d.type === 'union' && d.discriminator !== undefined && d.options !== undefined) {
      const tag = (value as Record<string, unknown> | undefined)?.[d.discriminator]
      for (const o of d.options) {
        const shape = defOf(unwrap(o)).shape
        const lit = shape?.[d.discriminator] === undefined
          ? undefined
          : defOf(unwrap(shape[d.discriminator])) as { values?: unknown[] }
        if (shape !== undefined && lit?.values?.includes(tag) === true) return shape
      }
    }
    return undefined
  }
  // Reads zod's internal definitions: a hint must never break loading, so any surprise just means no hint.
  try {
    let schema: unknown = config
    for (let i = 0; i < path.length; i++) {
      const d = defOf(unwrap(schema))
      if (d.type === 'record') schema = d.valueType
      else schema = shapeOf(schema, valueAt(data, path.slice(0, i)))?.[path[i] as string]
      if (schema === undefined) return []
    }
    return Object.keys(shapeOf(schema, valueAt(data, path)) ?? {})
  } catch {
    return []
  }
}

function suggest (key: string, known: readonly string[]): string {
  if (known.length === 0) return ''
  const close = known.map((k) => [k, editDistance(key.toLowerCase(), k)] as const)
    .filter(([k, d]) => d <= Math.max(1, Math.floor(k.length / 3))).sort((a, b) => a[1] - b[1])[0]
  return close !== undefined ? ` (did you mean "${close[0]}"?)` : ` (expected one of: ${known.join(', ')})`
}

function editDistance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]!
}

function finish (file: string, problems: readonly RawProblem[], secrets: ReadonlySet<string>): ConfigProblem[] {
  // Last line of defence: whatever a message says, it never carries a secret or an environment value.
  // Very short values are skipped: they cannot be secrets, and would shred ordinary words.
  const scrub = (m: string): string => {
    for (const s of secrets) if (s.length >= 4) m = m.split(s).join('[REDACTED]')
    return m
  }
  return problems
    .map((p) => {
      const path = renderPath(p.path)
      const message = `${path === '' ? '' : `${path}: `}${scrub(p.message)}`
      return { file, line: p.pos.line, col: p.pos.col, path, message }
    })
    .sort((a, b) => a.line - b.line || a.col - b.col)
}

/** `tools.github.match.host`, `tools.x.scopes[0]`, `resolve["api.example.com"]`. */
export function renderPath (path: KeyPath): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (/^[A-Za-z0-9_-]+$/.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

/** Fills what the proxy would otherwise compute per request, and normalises hosts for comparison. */
function complete (cfg: Config): Config {
  const tools: Record<string, ToolConfig> = {}
  for (const [name, tool] of Object.entries(cfg.tools)) {
    tools[name] = {
      ...tool,
      match: { ...tool.match, host: normalizeToolHost(tool.match.host) },
      strip: tool.strip ?? defaultStrip(tool.inject),
      scrub_body: tool.scrub_body ?? defaultScrubBody(tool.inject),
    }
  }
  const resolve: Record<string, string> = {}
  for (const [host, ip] of Object.entries(cfg.resolve)) resolve[normalizeHostName(host)] = ip
  return { ...cfg, resolve, tools }
}

function normalizeToolHost (host: string): string {
  // IPv6 literals are kept without brackets, as node:net and BlockList expect them.
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1).toLowerCase() : normalizeHostName(host)
}

function deepFreeze<T> (value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

function atStart (file: string, message: string): ConfigProblem {
  return { file, line: 1, col: 1, path: '', message }
}

function describeFsError (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  switch (code) {
    case 'ENOENT': return 'ENOENT: no such file'
    case 'EACCES': case 'EPERM': return `${code}: permission denied`
    case 'EISDIR': return 'EISDIR: it is a directory'
    default: return typeof code === 'string' ? code : 'unknown error'
  }
}
