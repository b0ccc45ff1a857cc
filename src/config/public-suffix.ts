/**
 * Wildcard tools (`match.host: "*.suffix"`) that cover names other parties can register: a public suffix of the
 * Public Suffix List's ICANN section (`*.co.uk`), or of its private section, where a provider hands names out to
 * its customers (`*.herokuapp.com`), or a suffix with such a rule below it (`*.amazonaws.com` covers every
 * `BUCKET.s3.amazonaws.com`). A wildcard matches any depth (proxy/router.ts), so whoever gets such a name receives
 * the tool's credential (docs/threat-model.md, "A tool (upstream)").
 *
 * Only `sidekey check` imports this module: tldts carries the whole list (a 277 KB chunk of dist/ that costs about
 * 7 MB of RSS and 15 ms of CPU to load), which no request needs.
 */
import { parse } from 'tldts'
// The list's trie, to find rules below a suffix; tldts has no API for that. tldts is pinned to one version in
// package.json, and test/config/public-suffix.test.ts fails if this layout changes.
import { edgeChild, edgeLength, edgeStart, labelText, nodeFlags, rulesRoot } from 'tldts/dist/cjs/src/data/trie.js'

export type SuffixSection = 'ICANN' | 'private'

export interface OpenWildcard {
  readonly tool: string
  /** The suffix the tool's wildcard covers, lower case: `co.uk` for `*.co.uk`. */
  readonly suffix: string
  /** The Public Suffix List rule under which others register names: the suffix itself, or one below it. */
  readonly rule: string
  readonly section: SuffixSection
  /** How many further rules lie at or below the suffix (`*.amazonaws.com` has hundreds). */
  readonly more: number
}

const ICANN = 1
const PRIVATE = 2
const sectionOf = (flags: number): SuffixSection => (flags & ICANN) !== 0 ? 'ICANN' : 'private'

/** Each wildcard tool whose suffix is, or has below it, a public suffix; in the tools' order. */
export function openWildcards (
  tools: Readonly<Record<string, { readonly match: { readonly host: string } }>>
): OpenWildcard[] {
  const open: OpenWildcard[] = []
  for (const [tool, { match }] of Object.entries(tools)) {
    const host = match.host.toLowerCase().replace(/\.$/, '')
    if (!host.startsWith('*.')) continue
    const suffix = host.slice(2)
    const found = ruleAt(suffix) ?? rulesBelow(suffix)
    if (found !== undefined) open.push({ tool, suffix, ...found })
  }
  return open
}

/** The warning line for one open wildcard (without the `sidekey: warning:` prefix). */
export function describeOpenWildcard (w: OpenWildcard): string {
  const who = w.section === 'ICANN'
    ? 'a public suffix (ICANN section of the Public Suffix List): anyone can register a name under it'
    : 'a suffix whose names its provider hands out to customers (private section of the Public Suffix List): ' +
      'anyone with an account there can get a name under it'
  const more = w.more > 0 ? ` (and ${w.more} more)` : ''
  const where = w.rule === w.suffix ? `${w.suffix} is ${who}` : `it covers ${w.rule}${more}, ${who}`
  return `tool ${w.tool}: match.host "*.${w.suffix}": ${where} and receive this tool's credential; ` +
    'list the exact hosts instead, or a wildcard under a domain you own'
}

/** The suffix itself, or every name just below it (a `*.suffix` rule), is a listed public suffix. */
function ruleAt (suffix: string): Pick<OpenWildcard, 'rule' | 'section' | 'more'> | undefined {
  const probe = `sidekey-probe.${suffix}`
  const r = parse(probe, { allowPrivateDomains: true })
  if (r.publicSuffix === null || !(r.isIcann === true || r.isPrivate === true)) return undefined
  // The suffix of `probe` is the rule's match: `suffix`, or `probe` itself under a `*.suffix` rule.
  if (r.publicSuffix.length < suffix.length) return undefined
  const rule = r.publicSuffix === suffix ? suffix : `*.${suffix}`
  return { rule, section: r.isIcann === true ? 'ICANN' : 'private', more: 0 }
}

let edgeOffsets: Uint32Array | undefined

/** Where each edge's label starts in labelText: the labels are stored back to back in edge order. */
function labelOf (edge: number): string {
  if (edgeOffsets === undefined) {
    edgeOffsets = new Uint32Array(edgeLength.length + 1)
    for (let e = 0; e < edgeLength.length; e++) edgeOffsets[e + 1] = edgeOffsets[e]! + edgeLength[e]!
  }
  return labelText.slice(edgeOffsets[edge], edgeOffsets[edge]! + edgeLength[edge]!)
}

/** The shortest rule strictly below `suffix`, and how many others there are. */
function rulesBelow (suffix: string): Pick<OpenWildcard, 'rule' | 'section' | 'more'> | undefined {
  let node = rulesRoot
  for (const label of suffix.split('.').reverse()) {
    let next = -1
    for (let e = edgeStart[node]!; e < edgeStart[node + 1]! && next === -1; e++) {
      if (labelOf(e) === label) next = edgeChild[e]!
    }
    if (next === -1) return undefined
    node = next
  }
  let first: { rule: string, flags: number } | undefined
  let count = 0
  const todo: Array<{ node: number, name: string }> = [{ node, name: suffix }]
  for (let at = todo.pop(); at !== undefined; at = todo.pop()) {
    for (let e = edgeStart[at.node]!; e < edgeStart[at.node + 1]!; e++) {
      const child = { node: edgeChild[e]!, name: `${labelOf(e)}.${at.name}` }
      const flags = nodeFlags[child.node]! & (ICANN | PRIVATE)
      if (flags !== 0) {
        count++
        if (first === undefined || child.name.length < first.rule.length) first = { rule: child.name, flags }
      }
      todo.push(child)
    }
  }
  return first === undefined ? undefined : { rule: first.rule, section: sectionOf(first.flags), more: count - 1 }
}
