import * as z from 'zod'
import { config } from './schema.js'

/** Where editors find the schema: the `$schema` line at the top of every shipped YAML points at this file. */
export const SCHEMA_FILE = 'config/sidekey.schema.json'

/**
 * The config's JSON Schema, generated from the one zod schema (zod 4's JSON Schema output), for editors
 * (yaml-language-server) and CI linters. It describes what may be written: durations are strings like `10s` or
 * milliseconds, `${VAR}` interpolation happens before validation, and cross-section rules (issuer references,
 * duplicate routes) are `sidekey check`'s alone.
 */
export function configJsonSchema (): Record<string, unknown> {
  const schema = z.toJSONSchema(config, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' })
  return {
    $schema: schema.$schema,
    $id: 'https://sidekey.local/sidekey.schema.json',
    title: 'sidekey configuration',
    description: 'sidekey: a credential sidecar forward proxy. Reference: docs/configuration.md. ' +
      'Validate fully with `sidekey check --config FILE`.',
    ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== '$schema')),
  }
}

/** The schema file's exact text: `sidekey schema > config/sidekey.schema.json`. */
export function configJsonSchemaText (): string {
  return JSON.stringify(configJsonSchema(), null, 2) + '\n'
}

export interface SchemaKey {
  /** Dotted path; `<name>` stands for a user-chosen map key (a tool or issuer name). */
  readonly path: string
  readonly default?: unknown
}

/** Every key the schema accepts, depth first, for the reference in docs/configuration.md (a test keeps them equal). */
export function schemaKeys (): SchemaKey[] {
  const out = new Map<string, SchemaKey>()
  const walk = (node: unknown, path: string): void => {
    if (node === null || typeof node !== 'object') return
    const n = node as Record<string, unknown>
    for (const alt of ['anyOf', 'oneOf', 'allOf'] as const) {
      if (Array.isArray(n[alt])) for (const a of n[alt] as unknown[]) walk(a, path)
    }
    if (n.properties !== undefined && typeof n.properties === 'object') {
      for (const [k, v] of Object.entries(n.properties as Record<string, unknown>)) {
        const p = path === '' ? k : `${path}.${k}`
        const def = (v as { default?: unknown }).default
        if (!out.has(p)) out.set(p, def === undefined ? { path: p } : { path: p, default: def })
        walk(v, p)
      }
    }
    if (n.additionalProperties !== undefined && typeof n.additionalProperties === 'object') {
      walk(n.additionalProperties, `${path}.<name>`)
    }
    if (n.items !== undefined && typeof n.items === 'object') walk(n.items, path)
  }
  walk(configJsonSchema(), '')
  return [...out.values()]
}
