import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, Scalar } from 'yaml'
import type { Document, Node as YamlNode } from 'yaml'
import { interpolate } from './interpolate.js'

export type KeyPath = ReadonlyArray<string | number>

export interface Position { readonly line: number, readonly col: number }

/** Where a value sits in the file, and whether its text may be shown in a message. */
export interface NodeInfo {
  /** Position of the key naming this value (absent for list items and the root). */
  readonly key: Position | undefined
  readonly value: Position
  /** The value came (partly) from the environment, or sits under a secret-bearing key: never show it. */
  readonly hidden: boolean
}

export interface RawProblem { readonly path: KeyPath, readonly pos: Position, readonly message: string }

export interface SourceTree {
  /** Plain JS data; undefined when the YAML did not parse. */
  readonly data: unknown
  readonly nodes: ReadonlyMap<string, NodeInfo>
  readonly problems: readonly RawProblem[]
  /** Strings that must never appear in any message: secret-bearing values and environment values. */
  readonly secrets: ReadonlySet<string>
}

/** Keys whose values are credentials or may carry one. */
export function isSecretKey (path: KeyPath): boolean {
  const last = path[path.length - 1]
  if (typeof last === 'string' && (last === 'client_secret' || /(token|secret|password|key)$/i.test(last))) return true
  // Extra token-request parameters, an exec issuer's environment and command line may all carry credentials.
  return path[0] === 'issuers' && path.length > 3 && ['params', 'env', 'command'].includes(String(path[2]))
}

export const pathKey = (path: KeyPath): string => JSON.stringify(path)

const MAX_NODES = 100_000 // bounds alias expansion ("billion laughs") as well as plain size
const MAX_DEPTH = 64
const START: Position = { line: 1, col: 1 }

const YAML_MESSAGES: Record<string, string> = {
  DUPLICATE_KEY: 'duplicate key (each key may appear once in a mapping)',
  MULTIPLE_DOCS: 'a config file holds one YAML document (remove the extra "---")',
  TAB_AS_INDENT: 'tabs are not allowed as indentation in YAML; use spaces',
}

/**
 * Parses YAML text keeping the position of every key and value, interpolates `${VAR}` in string scalars,
 * and turns the document into plain data. Never throws: every problem is returned with its position.
 */
export function readYaml (text: string, env: NodeJS.ProcessEnv): SourceTree {
  const lineCounter = new LineCounter()
  // prettyErrors off: the pretty form quotes source lines, which may hold a secret.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, keepSourceTokens: false })
  const at = (offset: number | undefined): Position => offset === undefined ? START : lineCounter.linePos(offset)
  const nodes = new Map<string, NodeInfo>()
  const problems: RawProblem[] = []
  const secrets = new Set<string>()

  const lines = text.split('\n')
  // One mistake (a line indented wrong) makes the parser report several errors after it: the first is the one to fix.
  for (const e of [...doc.errors.slice(0, 1), ...doc.warnings]) {
    const first = e.message.split('\n')[0] ?? e.message
    const pos = atText(at(e.pos[0]), lines)
    // `{ port: ${PORT} }`: in flow style `{` and `}` are YAML syntax, so the variable breaks the mapping.
    const hint = /flow|node end/.test(first) && (lines[pos.line - 1] ?? '').includes('${')
      ? ' (a ${...} inside { } or [ ] must be quoted, or the mapping written in block style)'
      : ''
    problems.push({ path: [], pos, message: `YAML: ${YAML_MESSAGES[e.code] ?? lowerFirst(first)}${hint}` })
  }
  if (doc.errors.length > 0) return { data: undefined, nodes, problems, secrets }

  let visits = 0
  let tooBig = false
  const active = new Set<YamlNode>()

  const record = (path: KeyPath, info: NodeInfo): void => { nodes.set(pathKey(path), info) }

  const walk = (node: unknown, path: KeyPath, key: Position | undefined, depth: number): unknown => {
    if (tooBig) return undefined
    if (++visits > MAX_NODES || depth > MAX_DEPTH) {
      tooBig = true
      const message = 'YAML: the document is too large or too deep ' +
        `(over ${MAX_NODES} values or ${MAX_DEPTH} levels, aliases included)`
      problems.push({ path, pos: key ?? START, message })
      return undefined
    }
    const pos = at(rangeStart(node))
    const hiddenByKey = isSecretKey(path)
    if (isAlias(node)) {
      const target = node.resolve(doc as Document)
      if (target === undefined) {
        problems.push({ path, pos, message: `YAML: unknown alias *${node.source}` })
        return undefined
      }
      if (active.has(target)) {
        problems.push({ path, pos, message: `YAML: alias *${node.source} refers to a value that contains it` })
        return undefined
      }
      const value = walk(target, path, key, depth + 1)
      // Report problems about an aliased value where it is used, not where its anchor is.
      const info = nodes.get(pathKey(path))
      record(path, { key, value: pos, hidden: info?.hidden ?? hiddenByKey })
      return value
    }
    if (isScalar(node)) return scalar(node, path, key, pos, hiddenByKey)
    if (isMap(node)) {
      active.add(node)
      const obj: Record<string, unknown> = {}
      record(path, { key, value: pos, hidden: false })
      for (const pair of node.items) {
        const keyNode = pair.key
        const keyPos = at(rangeStart(keyNode))
        if (!isScalar(keyNode) || (keyNode.value !== null && typeof keyNode.value === 'object')) {
          problems.push({ path, pos: keyPos, message: 'YAML: keys must be plain strings' })
          continue
        }
        const name = keyNode.value === null ? '' : String(keyNode.value)
        const child = [...path, name]
        const value = pair.value === null
          ? (record(child, { key: keyPos, value: keyPos, hidden: isSecretKey(child) }), null)
          : walk(pair.value, child, keyPos, depth + 1)
        // defineProperty: a `__proto__` key must stay an (unknown) key, not replace the prototype.
        Object.defineProperty(obj, name, { value, enumerable: true, writable: true, configurable: true })
      }
      active.delete(node)
      return obj
    }
    if (isSeq(node)) {
      active.add(node)
      record(path, { key, value: pos, hidden: false })
      const arr = node.items.map((item, i) => walk(item, [...path, i], undefined, depth + 1))
      active.delete(node)
      return arr
    }
    record(path, { key, value: pos, hidden: hiddenByKey })
    return null // an empty document
  }

  const scalar = (
    node: Scalar, path: KeyPath, key: Position | undefined, pos: Position, hiddenByKey: boolean
  ): unknown => {
    let value: unknown = node.value
    let hidden = hiddenByKey
    if (typeof value === 'string') {
      const r = interpolate(value, env)
      if (r.error !== undefined) problems.push({ path, pos, message: r.error })
      if (r.missing.length > 0) {
        const names = r.missing.join(', ')
        const many = r.missing.length > 1
        const message = `environment variable${many ? 's' : ''} ${names} ${many ? 'are' : 'is'} not set ` +
          `(write \${${r.missing[0]}:-default} to give a default)`
        problems.push({ path, pos, message })
      }
      for (const v of r.envValues) if (v !== '') secrets.add(v)
      if (r.envValues.length > 0) hidden = true
      value = r.value
      // `port: ${PORT:-8088}` should be the number 8088, as if the variable had been written in place.
      if (r.substituted && node.type === Scalar.PLAIN) value = retype(r.value)
    }
    if (hiddenByKey && typeof value === 'string' && value !== '') secrets.add(value)
    record(path, { key, value: pos, hidden })
    return value
  }

  const data = walk(doc.contents, [], undefined, 0)
  return { data, nodes, problems, secrets }
}

function retype (s: string): unknown {
  if (/^[-+]?\d+$/.test(s)) return Number(s)
  if (/^[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?$/.test(s)) return Number(s)
  if (s === 'true') return true
  if (s === 'false') return false
  return s
}

function rangeStart (node: unknown): number | undefined {
  const range = (node as { range?: readonly number[] } | null)?.range
  return range?.[0]
}

function lowerFirst (s: string): string {
  return s.length > 0 ? s[0]!.toLowerCase() + s.slice(1) : s
}

/** An error the parser places in a line's indentation points at the line's first character, where the mistake is. */
function atText (pos: Position, lines: readonly string[]): Position {
  const line = lines[pos.line - 1] ?? ''
  // Spaces only: a tab in the indentation is itself the mistake, and is pointed at.
  const indent = /^ */.exec(line)![0].length
  return pos.col <= indent ? { line: pos.line, col: indent + 1 } : pos
}
