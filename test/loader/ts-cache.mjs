// Module hooks in front of ts-node (tap's TypeScript loader): a `.ts` file whose bytes, path, compiler, ts-node and
// tsconfig are unchanged since some test process last transpiled it is loaded from a disk cache instead of being
// transpiled again. Every test file is its own process and imports most of src/: transpiling it all cost ~4 s of
// CPU per process (importing src/app.ts: 4.6 s user through ts-node, 0.4 s as tsc's JavaScript). A cached entry is
// ts-node's own output, byte for byte, so coverage and source maps are the same as without the cache.
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))
const dir = join(root, 'node_modules', '.cache', 'sidekey-ts')
// Only what ts-node does with types stripped and nothing checked: with TAP_TYPECHECK it must see every file.
// SIDEKEY_TS_CACHE=0 turns it off (to compare, or to rule it out).
const enabled = process.env.TS_NODE_TRANSPILE_ONLY === '1' && process.env.TAP_TYPE_STRIP_ONLY !== '1' &&
  process.env.SIDEKEY_TS_CACHE !== '0'
const TS = /\.[cm]?tsx?$/

/** What else may decide ts-node's output: Node's, the compiler's and ts-node's versions, the tsconfig, its settings. */
function inputs () {
  const require = createRequire(join(root, 'package.json'))
  const read = (path) => { try { return readFileSync(path, 'utf8') } catch { return '' } }
  const env = Object.entries(process.env).filter(([k]) => k.startsWith('TS_NODE_')).sort()
  return [
    'sidekey-ts-cache 1',
    process.version,
    read(require.resolve('typescript/package.json')),
    read(require.resolve('@isaacs/ts-node-temp-fork-for-pr-2009/package.json')),
    read(process.env.TS_NODE_PROJECT ?? join(root, 'tsconfig.json')),
    JSON.stringify(env),
  ].join('\0')
}

const base = enabled ? inputs() : ''

export async function load (url, context, next) {
  if (!enabled || !url.startsWith('file:') || !TS.test(url) || url.includes('/node_modules/')) return next(url, context)
  const bytes = await readFile(fileURLToPath(url))
  const file = join(dir, createHash('sha256').update(base).update('\0' + url + '\0').update(bytes).digest('hex'))
  const hit = await readFile(file, 'utf8').then((text) => JSON.parse(text), () => undefined)
  if (hit !== undefined) return { format: hit.format, source: hit.source, shortCircuit: true }
  const result = await next(url, context)
  if (typeof result.source === 'string' || Buffer.isBuffer(result.source)) {
    try {
      mkdirSync(dir, { recursive: true })
      // Written aside and renamed: test processes running in parallel never read half an entry.
      const tmp = `${file}.${process.pid}.${Date.now()}`
      writeFileSync(tmp, JSON.stringify({ format: result.format, source: String(result.source) }))
      renameSync(tmp, file)
    } catch { /* a cache that cannot be written only costs time */ }
  }
  return result
}
