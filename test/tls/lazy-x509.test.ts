import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tempDir } from './helpers.js'

// @peculiar/x509 with reflect-metadata, tsyringe and the asn1 schema packages hold ≈ 23 MB of RSS; sidekey needs
// them only to create a CA, so a start that loads an existing one must not pull them in (docs/performance.md).

const here = dirname(fileURLToPath(import.meta.url))
const src = resolve(here, '../../src')
const CREATION_ONLY = ['@peculiar/x509', 'reflect-metadata']
// Packages only some configs or commands need: jose (private_key_jwt client assertions), SigV4 signing, the fleet's
// NATS client, PromQL parsing, the Public Suffix List (sidekey check). Each costs RSS and start time on every pod
// that does not use it.
const SOME_CONFIGS_ONLY = ['jose', '@smithy/', '@nats-io/', '@prometheus-io/', 'tldts', ...CREATION_ONLY]

interface Probe { origin: string, peculiar: boolean, reflectMetadata: boolean }

/** Runs start-probe.ts in a fresh node with the same TypeScript loader this test runs under. */
async function probe (configFile: string): Promise<Probe> {
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript') || a.includes('test/loader/'))
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [...loader, join(here, 'start-probe.ts'), configFile], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) { reject(new Error(`probe failed: ${stderr}`)); return }
      resolve(JSON.parse(stdout) as Probe)
    })
  })
}

t.test('a start with an existing CA loads neither @peculiar/x509 nor reflect-metadata; creating one does', async (t) => {
  const dir = await tempDir(t)
  const config = join(dir, 'sidekey.yaml')
  await writeFile(config, [
    'instance_id: probe',
    'listen: 127.0.0.1:0',
    'admin: { listen: 127.0.0.1:0 }',
    `ca: { dir: ${JSON.stringify(join(dir, 'ca'))} }`,
    'issuers: {}',
    'tools: {}',
  ].join('\n') + '\n')
  // The first start shows the probe does see the packages when they are loaded.
  t.same(await probe(config), { origin: 'created', peculiar: true, reflectMetadata: true })
  t.same(await probe(config), { origin: 'loaded', peculiar: false, reflectMetadata: false })
})

/** Relative modules and packages a TypeScript file imports at load time (not `import type`, not `import()`). */
async function staticImports (file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8')
  const specifiers: string[] = []
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) {
    if (m[1] !== undefined) specifiers.push(m[1])
  }
  return specifiers
}

t.test('no static import chain from cli.ts or app.ts reaches a package only some configs need', async (t) => {
  const seen = new Set<string>()
  const reached: string[] = []
  const queue = [join(src, 'cli.ts'), join(src, 'app.ts')]
  for (let file = queue.shift(); file !== undefined && seen.size < 1000; file = queue.shift()) {
    if (seen.has(file)) continue
    seen.add(file)
    for (const spec of await staticImports(file)) {
      if (spec.startsWith('.')) queue.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')))
      else if (SOME_CONFIGS_ONLY.some((p) => p.endsWith('/') ? spec.startsWith(p) : spec === p || spec.startsWith(`${p}/`))) reached.push(`${file.slice(src.length + 1)} imports ${spec}`)
    }
  }
  t.ok(seen.has(join(src, 'tls', 'ca.ts')), 'the walk reaches the CA module')
  t.ok(seen.has(join(src, 'credentials', 'issuers', 'local-jwt.ts')), 'the walk reaches the issuers')
  t.same(reached, [])
})
