import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import ts from 'typescript'

/**
 * Transpiles src/ and test/bench/ to plain JavaScript (no type check) for the bench's child processes, so the proxy
 * under test carries no TypeScript loader: a loader holds the compiler in memory (~200 MB of RSS) and would swamp
 * the RSS figures. Output goes under node_modules/.cache, where package resolution still finds node_modules, in a
 * directory of this run's own (two runs at once must not read each other's half-written files); the caller removes it.
 */
export function compileForChildren (root: string): string {
  const out = join(root, 'node_modules', '.cache', `sidekey-bench-${process.pid}`)
  const options: ts.CompilerOptions = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, verbatimModuleSyntax: true, sourceMap: false }
  for (const dir of ['src', join('test', 'bench')]) {
    for (const file of walk(join(root, dir))) {
      if (!file.endsWith('.ts') || file.endsWith('.d.ts') || file.endsWith('.test.ts')) continue
      const js = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions: options, fileName: file }).outputText
      const target = join(out, relative(root, file)).replace(/\.ts$/, '.js')
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, js)
    }
  }
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n')
  return out
}

function * walk (dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield * walk(p)
    else yield p
  }
}
