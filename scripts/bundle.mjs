// Bundles tsc's output (build/) into dist/: one file per entry point plus shared chunks, dependencies included.
// A sidecar starts on every pod, and most of its start was Node resolving, reading and linking ~170 ES modules one
// by one; one bundle starts faster and holds less source in memory (docs/performance.md, "bundle").
// What only some configs need (NATS, SigV4, the CA builder, the audit commands) stays behind dynamic import()s,
// so it becomes chunks loaded on first use, as the modules were.
import { rmSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { build } from 'esbuild'

/** sidekey's `import ... from 'undici'` gets scripts/undici-core.js (the demo, a separate entry, keeps the whole index). */
const undiciCore = {
  name: 'undici-core',
  setup (b) {
    b.onResolve({ filter: /^undici$/ }, (args) => args.importer.endsWith('demo.js') ? undefined : { path: resolve('scripts/undici-core.js') })
  },
}

rmSync('dist', { recursive: true, force: true })
const result = await build({
  entryPoints: ['build/cli.js', 'build/app.js', 'build/demo.js'],
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  chunkNames: 'chunks/[name]-[hash]',
  // Whitespace and syntax only: identifiers keep their names, so class and function names (pino's error `type`,
  // stack traces) need no keepNames. keepNames wrapped every named closure in a defineProperty call, ~11 per
  // request on the hot path and hundreds at load: without it, 5-10 % less CPU per request, a faster start and
  // 4-6 MB less RSS (docs/performance.md, "Third pass").
  minifyWhitespace: true,
  minifySyntax: true,
  // Maps back to src/*.ts through tsc's own maps: `node --enable-source-maps` prints TypeScript lines.
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'linked',
  // The CommonJS packages in the bundle (pino, prom-client, yaml, ...) require() Node's built-ins.
  banner: { js: "import { createRequire as __sidekeyRequire } from 'node:module'; const require = __sidekeyRequire(import.meta.url);" },
  plugins: [undiciCore],
  metafile: true,
  logLevel: 'warning',
})
// What each output holds and imports: test/build/bundle.test.ts reads it to check what a start loads.
writeFileSync('build/bundle-meta.json', JSON.stringify(result.metafile))
