import { judgeMcp, mcpPatchLines } from './mcp-scopes.js'
import { pathShape } from '../secrets/path-shape.js'
import type { ToolGrant, ToolScopes, ToolUse } from './scopes.js'

/** What to narrow a grant to, from what the trail shows was used, and the config patch that says so. */

const METHOD = /^[A-Z]+$/

/**
 * A prefix worth granting: up to its last `/`, and not into an id-like segment (`/repos/acme/42` → `/repos/acme/`),
 * since the next call will carry another id.
 */
export function grantablePrefix (prefix: string): string {
  const cut = prefix.slice(0, prefix.lastIndexOf('/') + 1)
  if (cut === '') return '/'
  const raw = cut.split('/')
  const shaped = pathShape(cut).split('/')
  let keep = 0
  while (keep < raw.length && raw[keep] === shaped[keep]) keep++
  return keep >= raw.length ? cut : raw.slice(0, keep).join('/') + '/'
}

export function judge (
  tool: string, granted: ToolGrant | null, used: ToolUse, haveConfig: boolean, fromMs: number | undefined
): ToolScopes {
  const out: ToolScopes = {
    tool, in_config: granted !== null, granted, used, recommend: {}, mcp_unused: {}, unused: false, notes: [],
  }
  const window = fromMs === undefined ? 'in this trail' : `since ${new Date(fromMs).toISOString()}`
  if (haveConfig && granted === null) out.notes.push('not in this config (removed or renamed?)')
  if (used.calls === 0) {
    if (granted === null && used.issued === 0) return out
    out.unused = true
    out.notes.push(used.issued > 0
      ? `credential held and refreshed (${used.issued} issued) but never used ${window}: ` +
        'remove the tool, or find out why it is kept'
      : `never used ${window}`)
    return out
  }
  const methods = Object.keys(used.methods).filter((m) => METHOD.test(m)).sort()
  const wider = granted === null || granted.methods === null || granted.methods.some((m) => !methods.includes(m))
  if (methods.length > 0 && wider) {
    out.recommend.methods = methods
  }
  const prefix = used.common_prefix
  const grantedPrefix = granted?.path_prefix ?? '/'
  const under = grantedPrefix.endsWith('/') ? grantedPrefix : grantedPrefix + '/'
  if (prefix !== null && prefix !== '/' && prefix.length > grantedPrefix.length && prefix.startsWith(under)) {
    out.recommend.path_prefix = prefix
  }
  if (granted !== null && granted.scopes.length > 0) {
    out.notes.push('scopes: the trail cannot tell which scopes a call needed; ' +
      'check them against the methods and paths used')
  }
  const mcp = judgeMcp(granted?.mcp ?? null, used.mcp, used.path_shapes.map((s) => s.shape), window)
  if (Object.keys(mcp.recommend).length > 0) out.recommend.mcp = mcp.recommend
  out.mcp_unused = mcp.unused
  out.notes.push(...mcp.notes)
  return out
}

/** A YAML scalar: plain when it is safe to be, else JSON (a YAML double-quoted string). */
function scalar (s: string): string {
  return /^[A-Za-z0-9/_.~-]+$/.test(s) && !/^[-.~]/.test(s) ? s : JSON.stringify(s)
}

export function yamlPatch (tools: readonly ToolScopes[]): string {
  const out: string[] = []
  for (const t of tools) {
    if (!t.in_config) continue
    const r = t.recommend
    if (t.unused) {
      out.push(`  # ${t.tool}: ${t.notes[t.notes.length - 1] ?? 'unused'}`)
      continue
    }
    if (r.methods === undefined && r.path_prefix === undefined && r.mcp === undefined) continue
    out.push(`  ${t.tool}:`)
    if (r.methods !== undefined || r.path_prefix !== undefined) out.push('    match:')
    if (r.methods !== undefined) out.push(`      methods: [${r.methods.join(', ')}]`)
    if (r.path_prefix !== undefined) out.push(`      path_prefix: ${scalar(r.path_prefix)}`)
    out.push(...mcpPatchLines(r.mcp ?? {}, scalar))
  }
  return out.length === 0 ? '' : ['tools:', ...out].join('\n') + '\n'
}
