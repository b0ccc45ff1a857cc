import { normalizeHost } from '../net/host.js'

interface ToolLike {
  readonly match: { readonly host: string }
  readonly plaintext?: boolean
}

/**
 * The hosts whose leaves are worth minting before any agent asks: each tool's exact host, normalised as a CONNECT
 * target is. Wildcard tools are left out (their names are only known when an agent connects), and so are plaintext
 * tools (plain HTTP needs no leaf).
 */
export function toolLeafHosts (tools: Readonly<Record<string, ToolLike>>): string[] {
  const hosts = new Set<string>()
  for (const tool of Object.values(tools)) {
    if (tool.plaintext === true || tool.match.host.startsWith('*.')) continue
    try {
      hosts.add(normalizeHost(tool.match.host))
    } catch { /* refused by the config check already; nothing to mint */ }
  }
  return [...hosts]
}
