import { fileURLToPath } from 'node:url'
import { ConfigError, formatProblems } from '../../src/config/load.js'

/** Absolute path of a config fixture. */
export const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url))

/** The repository's default config. */
export const defaultConfigFile = fileURLToPath(new URL('../../config/sidekey.yaml', import.meta.url))

/** The `FILE:LINE:COL: message` lines a rejected config produces; fails loudly when the config was accepted. */
export async function rejectionOf (load: () => unknown): Promise<{ error: ConfigError, lines: string[] }> {
  try {
    await load()
  } catch (err) {
    if (err instanceof ConfigError) return { error: err, lines: formatProblems(err.problems) }
    throw err
  }
  throw new Error('expected the config to be rejected, it was accepted')
}

/** A minimal valid config with `extra` appended under `tools:` (indented by the caller). */
export const minimal = (tools: string, head = ''): string =>
  `instance_id: t\n${head}issuers:\n  local:\n    type: local_jwt\ntools:\n${tools}`
