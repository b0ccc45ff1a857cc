import { spawnSync } from 'node:child_process'
// No Docker engine runs in CI, so the image is checked by reading its Dockerfile: the stages and bases, what
// reaches the runtime stage, the user, the ports, the entrypoint, and that every file it copies is in the build
// context (a COPY of a missing or .dockerignore'd path is the classic way a `docker build` breaks).
import { existsSync, readFileSync } from 'node:fs'
import t from 'tap'
import { loadConfigFile } from '../../src/config/load.js'
import { copyParts, dockerIgnored, execForm, parseDockerfile, readRepoFile, repoPath } from './helpers.js'
import type { Instruction, Stage } from './helpers.js'

const stages = parseDockerfile(readRepoFile('Dockerfile'))
const ignore = readRepoFile('.dockerignore')
const runtime = stages.at(-1) as Stage
const of = (stage: Stage, keyword: string): Instruction[] => stage.instructions.filter((i) => i.keyword === keyword)
const runs = (stage: Stage): string => of(stage, 'RUN').map((i) => i.args).join('\n')
const NODE24 = /^(node:24(\.\d+)*-(bookworm|trixie)-slim|gcr\.io\/distroless\/nodejs24-debian1[23](:\S+)?)$/

t.test('multi-stage: a named build stage compiles on Node 24 with dev dependencies', async (t) => {
  t.ok(stages.length >= 2, 'at least a build and a runtime stage')
  const build = stages.find((s) => s.name === 'build')
  if (build === undefined) return t.fail('no stage named build')
  t.match(build.base, /^node:24(\.\d+)*-bookworm-slim$/, 'build stage on node:24 bookworm-slim')
  t.match(runs(build), /\bnpm ci\b(?![^\n]*--omit=dev)/, 'build stage installs all dependencies (dev included) with npm ci')
  t.match(runs(build), /\bnpm run build\b/, 'build stage runs npm run build')
  t.ok(stages.every((s) => NODE24.test(s.base)), `every stage is on Node 24: ${stages.map((s) => s.base).join(', ')}`)
})

t.test('the runtime stage gets the bundled dist/ only: no node_modules, no source, no dev dependencies', async (t) => {
  t.match(runtime.base, NODE24, 'runtime on node:24 slim or distroless nodejs24')
  t.equal(runtime.name, undefined, 'the last stage is the image (no --target needed)')
  const copies = of(runtime, 'COPY').map((i) => copyParts(i.args))
  // dist/ is self-contained (test/build/bundle.test.ts runs it with no node_modules beside it).
  t.notOk(copies.some((c) => c.dest.replace(/\/$/, '').endsWith('node_modules') || c.sources.some((s) => s.includes('node_modules'))), 'no node_modules in the image')
  const dist = copies.find((c) => c.sources.some((s) => s.replace(/\/$/, '').endsWith('dist')))
  t.equal(dist?.from, 'build', 'dist/ comes from the build stage')
  const build = stages.find((s) => s.name === 'build')
  t.ok(build !== undefined && of(build, 'COPY').some((i) => copyParts(i.args).sources.some((s) => s.replace(/^\.\//, '').replace(/\/$/, '') === 'scripts')), 'the build stage has scripts/ (the bundler)')

  const localSources = copies.filter((c) => c.from === undefined).flatMap((c) => c.sources.map((s) => s.replace(/^\.\//, '').replace(/\/$/, '')))
  for (const src of localSources) {
    t.ok(src === 'package.json' || src === 'config' || src.startsWith('config/'), `runtime copies from the context only package.json and config/: ${src}`)
  }
  t.notOk(copies.some((c) => c.sources.some((s) => /^(\.|\.\/|src|test|tsconfig.*)\/?$/.test(s))), 'no src/, test/, tsconfig or whole-context copy')
  t.notMatch(runs(runtime), /npm (ci|install|i)\b/, 'nothing is installed in the runtime stage')
  // The base's global packages (npm, corepack) go as a whole: scripts/image/check-contents.sh refuses any
  // node_modules directory in the built image, an empty one left behind included.
  t.match(runs(runtime), /\brm -rf\b[^\n]* \/usr\/local\/lib\/node_modules(\s|$)/, 'the base\'s global node_modules is deleted')
})

t.test('runs as a numeric non-root user with a read-only root filesystem', async (t) => {
  const users = of(runtime, 'USER')
  const user = users.at(-1)?.args
  if (user === undefined) return t.fail('runtime stage sets no USER')
  t.match(user, /^\d+(:\d+)?$/, 'numeric uid[:gid], so runAsNonRoot can be verified')
  t.equal(user, '10001:10001', 'the uid the manifests use')
  t.not(Number(user.split(':')[0]), 0, 'not root')

  const env = of(runtime, 'ENV').map((i) => i.args).join(' ')
  const configPath = /SIDEKEY_CONFIG=(\S+)/.exec(env)?.[1]
  t.equal(configPath, '/etc/sidekey/sidekey.yaml', 'SIDEKEY_CONFIG names the mounted config')

  // A V8 flag in NODE_OPTIONS that Node refuses would stop the container before sidekey starts.
  const nodeOptions = /NODE_OPTIONS=(\S+)/.exec(env)?.[1]
  t.equal(nodeOptions, '--max-semi-space-size=4', 'the young generation docs/performance.md measured')
  const probe = spawnSync(process.execPath, ['-e', 'process.exit(0)'], { env: { ...process.env, NODE_OPTIONS: nodeOptions }, encoding: 'utf8' })
  t.equal(probe.status, 0, `node accepts NODE_OPTIONS=${nodeOptions ?? ''}: ${probe.stderr}`)

  // The default config baked in at SIDEKEY_CONFIG must be valid and keep its CA dir on a volume the user owns.
  const baked = of(runtime, 'COPY').map((i) => copyParts(i.args)).find((c) => c.dest === configPath)
  if (baked === undefined) return t.fail('no default config at SIDEKEY_CONFIG')
  const cfg = await loadConfigFile(repoPath(baked.sources[0] ?? ''), { SIDEKEY_INSTANCE_ID: 'image-test' })
  const volumes = of(runtime, 'VOLUME').flatMap((i) => execForm(i.args) ?? i.args.split(' '))
  t.ok(volumes.includes(cfg.ca.dir), `ca.dir ${cfg.ca.dir} is a VOLUME`)
  t.match(runs(runtime), new RegExp(`chown 10001:10001 [^\\n]*${cfg.ca.dir.replace(/\//g, '\\/')}`), 'and owned by the runtime user')
  t.match(cfg.listen, /^127\.0\.0\.1:/, 'the default proxy listens on loopback')
})

t.test('exposes the proxy and admin ports and runs the CLI', async (t) => {
  const ports = of(runtime, 'EXPOSE').flatMap((i) => i.args.split(' ')).map((p) => p.replace(/\/tcp$/, ''))
  t.same(ports.sort(), ['4750', '4751'])

  const entrypoint = execForm(of(runtime, 'ENTRYPOINT').at(-1)?.args ?? '')
  t.same(entrypoint, ['node', '/app/dist/cli.js'], 'exec-form ENTRYPOINT (signals reach node as PID 1)')
  t.same(execForm(of(runtime, 'CMD').at(-1)?.args ?? ''), ['run'], 'CMD run, so `docker run IMAGE check` works')
  t.equal(of(runtime, 'WORKDIR').at(-1)?.args, '/app')

  // /app/dist/cli.js is what `npm run build` produces and what package.json calls the CLI.
  const pkg = JSON.parse(readRepoFile('package.json')) as { bin: Record<string, string>, scripts: Record<string, string> }
  t.equal(pkg.bin.sidekey, 'dist/cli.js')
  const build = JSON.parse(readRepoFile('tsconfig.build.json')) as { compilerOptions: { rootDir: string, outDir: string } }
  t.same([build.compilerOptions.rootDir, build.compilerOptions.outDir], ['src', 'build'], 'src/cli.ts compiles to build/cli.js')
  t.match(pkg.scripts.build, /tsconfig\.build\.json && node scripts\/bundle\.mjs/, 'then build/cli.js is bundled into dist/cli.js')
})

t.test('every file the Dockerfile copies from the context exists and is not .dockerignore\'d', async (t) => {
  const sources = stages.flatMap((s) => of(s, 'COPY').map((i) => copyParts(i.args)).filter((c) => c.from === undefined))
    .flatMap((c) => c.sources).map((s) => s.replace(/^\.\//, '').replace(/\/$/, ''))
  t.ok(sources.length > 0)
  for (const src of new Set(sources)) {
    t.ok(existsSync(repoPath(src)), `${src} exists`)
    t.notOk(dockerIgnored(src, ignore), `${src} is in the build context`)
  }
  // tsconfig.build.json extends tsconfig.json: both must be in the context.
  t.ok(sources.includes('tsconfig.json') && sources.includes('tsconfig.build.json'))
})

t.test('.dockerignore keeps local state and secrets out of the build context', async (t) => {
  for (const path of ['node_modules', 'node_modules/undici/index.js', 'dist/cli.js', 'build/cli.js', 'data/ca/ca-key.pem', '.git/HEAD',
    'coverage/index.html', '.tap/processinfo/x.json', 'server.log', 'deep/dir/key.pem']) {
    t.ok(dockerIgnored(path, ignore), `${path} is ignored`)
  }
  for (const path of ['src/cli.ts', 'scripts/bundle.mjs', 'package.json', 'package-lock.json', 'config/sidekey.yaml']) {
    t.notOk(dockerIgnored(path, ignore), `${path} is kept`)
  }
  // The .gitignore'd paths are local state of a developer's machine: none of them may reach the image.
  for (const entry of readFileSync(repoPath('.gitignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
    const probe = entry.replace(/\/$/, '').replace(/^\//, '').replace(/^\*/, 'x')
    t.ok(dockerIgnored(probe, ignore), `.gitignore entry ${entry} is also .dockerignore'd`)
  }
})
