import type { Config } from './schema.js'

/** The CA's name constraints when `ca.name_constraints` is on: the tool hosts (`*.x` as `.x`). */
export function caConstraints (config: Readonly<Config>): { nameConstraints?: string[] } {
  if (!config.ca.name_constraints) return {}
  return {
    nameConstraints: Object.values(config.tools)
      .map((t) => t.match.host.startsWith('*.') ? t.match.host.slice(1) : t.match.host),
  }
}

export const CA_COVERAGE_WARNING = 'these tools are outside the interception CA\'s name constraints: CONNECTs to ' +
  'them are refused (ca_constraint) until the CA is replaced with sidekey ca --rotate (then restart sidekey, and ' +
  'every agent must trust the new ca.pem)'

/**
 * Tools whose host the CA's name constraints do not cover (a wildcard is probed with one name under it). The CA is
 * anything that answers `permits`, so config/ needs nothing from tls/.
 */
export function uncoveredTools (config: Readonly<Config>, ca: { permits (host: string): boolean }): string[] {
  return Object.entries(config.tools)
    .filter(([, t]) => !ca.permits(t.match.host.replace(/^\*\./, 'x.')))
    .map(([name]) => name)
}
