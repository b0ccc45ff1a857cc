import t from 'tap'
import { spawn, execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Client, request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { listeningLine } from '../helpers/cli.js'

// What ships is dist/: the esbuild bundle of tsc's output (scripts/bundle.mjs, run by `npm run build`, which
// `npm test` runs first). These checks are on the bundle itself, as the image and `npm start` run it.

interface Meta { outputs: Record<string, { imports: Array<{ path: string, kind: string }>, inputs: Record<string, unknown>, entryPoint?: string }> }
const meta = JSON.parse(readFileSync(resolve('build/bundle-meta.json'), 'utf8')) as Meta
const run = promisify(execFile)

/** Every input a start of dist/cli.js evaluates: the entry and the chunks it imports statically, transitively. */
function startClosure (): Set<string> {
  const entry = Object.keys(meta.outputs).find((k) => meta.outputs[k]!.entryPoint === 'build/cli.js')
  if (entry === undefined) throw new Error('no dist/cli.js in the bundle metafile')
  return closureOf(entry)
}

/** Every input loading `output` evaluates: it and the chunks it imports statically, transitively. */
function closureOf (output: string): Set<string> {
  const outputs = new Set<string>()
  const todo = [output]
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    if (outputs.has(next)) continue
    outputs.add(next)
    for (const i of meta.outputs[next]!.imports) if (i.kind === 'import-statement' && meta.outputs[i.path] !== undefined) todo.push(i.path)
  }
  return new Set([...outputs].flatMap((o) => Object.keys(meta.outputs[o]!.inputs)))
}

t.test('a start loads none of what only some configs or commands need', async (t) => {
  const inputs = [...startClosure()]
  t.ok(inputs.some((i) => i.includes('node_modules/undici/lib/dispatcher/agent.js')), 'the closure is the real one (undici\'s Agent is in it)')
  const lazy: Array<[RegExp, string]> = [
    [/node_modules\/@nats-io\//, 'NATS (fleet:)'],
    // @opentelemetry/api alone is prom-client's own dependency (exemplars), at start before tracing existed.
    [/node_modules\/@opentelemetry\/(?!api\/)/, 'the OpenTelemetry SDK and exporter (tracing:)'],
    [/^build\/tracing\/otel\.js$/, 'the OTLP exporter (tracing:)'],
    [/node_modules\/@smithy\//, 'the SigV4 signer (aws_sigv4 tools)'],
    [/node_modules\/(@peculiar|reflect-metadata|tsyringe|@peculiar\/asn1)/, 'the X.509 builder (creating a CA)'],
    [/node_modules\/jose\//, 'jose (private_key_jwt)'],
    [/node_modules\/(@prometheus-io|@lezer)\//, 'the PromQL parser'],
    [/^build\/fleet\//, 'fleet control'],
    [/^build\/reports\//, 'the offline readers of the trail (reports: summary, tasks, scopes, inventory, verify, report)'],
    [/node_modules\/undici\/lib\/(web\/websocket|web\/cookies|mock|cache|interceptor)\//, 'undici beyond its Agent (scripts/undici-core.js)'],
    [/node_modules\/tldts/, 'the Public Suffix List (sidekey check)'],
    [/node_modules\/zod\/.*locales\/(?!en\.js)/, 'zod\'s other locales (zod is imported as a namespace, so the bundler can shake them)'],
  ]
  for (const [pattern, what] of lazy) t.same(inputs.filter((i) => pattern.test(i)), [], `not at start: ${what}`)
})

t.test('the verbs\' command modules (all loaded by sidekey help) pull in neither NATS nor the trail\'s readers', async (t) => {
  const commands = Object.keys(meta.outputs).filter((o) => Object.keys(meta.outputs[o]!.inputs).some((i) => /^build\/commands\/(fleet|audit|admin|approvals)\.js$/.test(i)))
  t.equal(commands.length, 4, 'fleet, audit, admin and approvals are each a chunk of their own')
  for (const chunk of commands) {
    const inputs = [...closureOf(chunk)]
    t.same(inputs.filter((i) => /node_modules\/@nats-io\/|^build\/fleet\/(?!usage\.js)|^build\/reports\/(?!usage\.js)/.test(i)), [], `${chunk}: only usage texts`)
  }
})

t.test('dist/ runs on its own: no node_modules beside it (the image ships only dist/)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-bundle-'))
  cpSync(resolve('dist'), join(dir, 'app', 'dist'), { recursive: true })
  cpSync(resolve('package.json'), join(dir, 'app', 'package.json'))
  const cli = join(dir, 'app', 'dist', 'cli.js')
  const upstream = await startUpstream()
  t.teardown(() => upstream.close())
  const config = join(dir, 'sidekey.yaml')
  writeFileSync(config, `
instance_id: bundle-test
ca: { dir: ${join(dir, 'ca')} }
resolve: { echo.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt } }
tools:
  echo: { match: { host: echo.tool.test, port: ${upstream.port} }, issuer: local, plaintext: true, placeholder: sidekey }
`)
  // Creating the CA loads the X.509 builder's chunk; check and run load the rest.
  const ca = await run(process.execPath, [cli, 'ca', '--config', config], { cwd: dir })
  t.match(ca.stdout, /ca\.pem/)
  const check = await run(process.execPath, [cli, 'check', '--config', config], { cwd: dir })
  t.match(check.stdout, /ok/)

  const child = spawn(process.execPath, [cli, 'run', '--config', config, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const addresses = await listeningLine(child, 30_000)
  const ready = await request(`http://${addresses.admin}/readyz`)
  await ready.body.dump()
  t.equal(ready.statusCode, 200, '/readyz')
  const proxy = new Client(`http://${addresses.proxy}`)
  t.teardown(() => proxy.close())
  const res = await proxy.request({ method: 'GET', path: `http://echo.tool.test:${upstream.port}/v1/x`, headers: { host: `echo.tool.test:${upstream.port}`, authorization: 'Bearer sidekey' } })
  const body = await res.body.json() as { authorization: string | null }
  t.equal(res.statusCode, 200, 'a call through the bundled proxy')
  t.match(upstream.seen.at(-1)?.headers.authorization, /^Bearer eyJ/, 'the upstream got a minted JWT, not the placeholder')
  t.equal(body.authorization, 'Bearer sidekey', 'its echo of the token reaches the agent as the placeholder (scrub_body by default)')
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM: a clean exit')
})

t.test('names survive the bundle without keepNames, which cost CPU on every request', async (t) => {
  const app = await import(resolve('dist/app.js')) as { Sidekey: { name: string, start: (o: { configFile: string }) => Promise<unknown> }, splitHostPort: { name: string } }
  t.equal(app.splitHostPort.name, 'splitHostPort', 'function names are the source\'s (identifiers are not minified)')
  // A class that refers to itself keeps its name behind esbuild's inner binding (`Sidekey = class _Sidekey`).
  t.match(app.Sidekey.name, /^_?Sidekey$/)
  // Errors are what a log line names (pino's err.type is the constructor's name).
  const err = await app.Sidekey.start({ configFile: join(tmpdir(), 'sidekey-no-such-config.yaml') }).then(() => undefined, (e: unknown) => e)
  t.equal((err as Error).constructor.name, 'ConfigError', 'an error class keeps its name')
  // keepNames wraps each named closure in a defineProperty call: about 11 per request and hundreds at load
  // (docs/performance.md, "Third pass").
  const chunks = Object.keys(meta.outputs).filter((o) => o.endsWith('.js'))
  const helper = chunks.filter((o) => /\b__name\(/.test(readFileSync(resolve(o), 'utf8')))
  t.same(helper, [], 'no chunk carries esbuild\'s keepNames helper')
})
