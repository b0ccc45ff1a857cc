import type { Command } from './command.js'
import { run } from './run.js'

/**
 * Each verb's command module, loaded only when that verb runs (or `sidekey help` lists them), so NATS, the
 * trail's readers and the Public Suffix List stay out of every other verb. `run` comes with the entry point: it is
 * what every pod starts.
 */
export const VERBS: ReadonlyMap<string, () => Promise<Command>> = new Map([
  ['run', async () => run],
  ['check', async () => (await import('./check.js')).check],
  ['ca', async () => (await import('./ca.js')).ca],
  ['audit', async () => (await import('./audit.js')).audit],
  ['schema', async () => (await import('./schema.js')).schema],
  ['fleet', async () => (await import('./fleet.js')).fleet],
  ['admin', async () => (await import('./admin.js')).admin],
  ['approvals', async () => (await import('./approvals.js')).approvals],
])
export const NAMES = [...VERBS.keys()]
