#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { Sidekey, VERSION } from './app.js'
import { preflight } from './config/preflight.js'
import { CA_COVERAGE_WARNING, caConstraints, uncoveredTools } from './config/ca-coverage.js'
import { ConfigError, formatProblems, loadConfigFile } from './config/load.js'
import { hostPort as hostPortSchema } from './config/schema.js'
import type { Config } from './config/schema.js'
import { loadCa, loadOrCreateCa, type CertificateAuthority } from './tls/ca.js'
import { writeCaBundle } from './tls/bundle.js'
import { SidekeyError } from './errors.js'
import { describeUpstream } from './proxy/upstream/upstream-target.js'

const USAGE = `usage: sidekey [run] [--config FILE] [--listen HOST:PORT] [--admin HOST:PORT]
       sidekey --version
       sidekey check --config FILE [--no-files] [--discover]   (--no-files: skip checking the files it names, away from
                                             its machine; --discover: fetch a resource: issuer's OAuth metadata now)
       sidekey ca --config FILE [--bundle OUT] [--rotate]
       sidekey audit [--json] [FILE...]      (reads stdin without FILE)
       sidekey audit scopes --config FILE [--since 30d|all] [--json] [FILE...]
       sidekey audit tasks [--json] [FILE...]  (calls, tools and statuses per X-Sidekey-Task)
       sidekey audit verify [--keys JWKS] [--from URL] [--fleet CONFIG] [--live] [--json] [FILE...]
       sidekey audit inventory [--yaml|--json] [FILE...]
       sidekey audit report --out report.html [--config FILE] [--keys JWKS] [--since 30d|all] [FILE...]
       sidekey schema                        (the config's JSON Schema, as in config/sidekey.schema.json)
       sidekey fleet keygen|lock|unlock|revoke|rotate|status|jwks ...   (sidekey fleet --help)
       sidekey admin status|rotate TOOL [--revoke-previous]|reload [--config FILE]   (the admin port, with its token)
       sidekey approvals list|approve ID|deny ID [--reason TEXT] [--config FILE]   (calls held for approval)

--config defaults to $SIDEKEY_CONFIG, then config/sidekey.yaml.
ca creates the CA if there is none and never replaces one; --rotate replaces it (every agent must then trust
the new ca.pem, and running sidekeys must be restarted). --bundle writes the system's trusted roots plus the CA.`

const VERBS = new Set(['run', 'check', 'ca', 'audit', 'schema', 'fleet', 'admin', 'approvals'])

/** Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage. */
async function main (argv: string[]): Promise<number> {
  if (argv[0] === '--version' || argv[0] === '-V') {
    process.stdout.write(`sidekey ${VERSION}\n`)
    return 0
  }
  // `sidekey --config x.yaml` runs; `sidekey chekc` is a typo, not a run with a stray argument.
  if (argv[0] !== undefined && !argv[0].startsWith('-') && !VERBS.has(argv[0])) {
    process.stderr.write(`sidekey: unknown command ${JSON.stringify(argv[0])}; the commands are ${[...VERBS].join(', ')}\n${USAGE}\n`)
    return 2
  }
  const verb = argv[0] !== undefined && VERBS.has(argv[0]) ? argv[0] : 'run'
  const rest = verb === argv[0] ? argv.slice(1) : argv
  if (verb === 'audit') return audit(rest)
  if (verb === 'fleet') {
    // Loaded only for this verb: the NATS client stays out of every other command.
    const { fleetCommand, FLEET_USAGE } = await import('./fleet/cli.js')
    if (rest[0] === undefined || rest[0] === '--help' || rest[0] === '-h') {
      process.stdout.write(FLEET_USAGE + '\n')
      return rest[0] === undefined ? 2 : 0
    }
    return fleetCommand(rest, { stdout: process.stdout, stderr: process.stderr })
  }
  // Failures (config, an unreadable token) reach report() through main's rejection.
  if (verb === 'admin') return (await import('./admin/cli.js')).adminCommand(rest, { stdout: process.stdout, stderr: process.stderr })
  if (verb === 'approvals') return (await import('./approvals/cli.js')).approvalsCommand(rest, { stdout: process.stdout, stderr: process.stderr })
  if (verb === 'schema') {
    const { configJsonSchemaText } = await import('./config/json-schema.js')
    process.stdout.write(configJsonSchemaText())
    return 0
  }
  let values: { config?: string, listen?: string, admin?: string, bundle?: string, rotate?: boolean, help?: boolean, 'no-files'?: boolean, discover?: boolean }
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        listen: { type: 'string' },
        admin: { type: 'string' },
        bundle: { type: 'string' },
        rotate: { type: 'boolean' },
        'no-files': { type: 'boolean' },
        discover: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (err) {
    process.stderr.write(`sidekey: ${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  if (values.help === true) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  for (const flag of ['listen', 'admin'] as const) {
    const v = values[flag]
    if (v !== undefined && !hostPortSchema.safeParse(v).success) {
      process.stderr.write(`sidekey: --${flag} expects HOST:PORT, got ${JSON.stringify(v)}\n`)
      return 2
    }
  }
  const file = values.config ?? process.env.SIDEKEY_CONFIG ?? 'config/sidekey.yaml'
  try {
    switch (verb) {
      case 'check': {
        // Also what `run` would only meet later: files that are missing or unreadable, commands that cannot run.
        const config = await loadConfigFile(file, process.env, { files: values['no-files'] !== true })
        // The very checks `run` makes before it touches anything, so check cannot pass a config run refuses.
        const { upstreamCa } = await preflight(config)
        const ca = await loadCa(config.ca.dir)
        const outside = ca === undefined ? [] : uncoveredTools(config, ca)
        if (outside.length > 0) process.stderr.write(`sidekey: warning: ${outside.map((n) => `tool ${n}`).join(', ')}: ${CA_COVERAGE_WARNING}\n`)
        // Only check loads the Public Suffix List (about 7 MB of RSS): `run` never needs it.
        const { openWildcards, describeOpenWildcard } = await import('./config/public-suffix.js')
        for (const open of openWildcards(config.tools)) process.stderr.write(`sidekey: warning: ${describeOpenWildcard(open)}\n`)
        process.stdout.write(`${file}: ok\n`)
        // Where a tool's credential goes when it is not the host it matches: worth a line an operator reads.
        for (const [name, tool] of Object.entries(config.tools)) {
          const line = describeUpstream(name, tool)
          if (line !== undefined) process.stdout.write(`${line}\n`)
        }
        // Discovery is network: only on request, so check stays usable away from the issuer's network.
        const { describeDiscovery } = await import('./credentials/issuers/discovery-check.js')
        const discovery = await describeDiscovery(config, { network: values.discover === true, upstreamCa })
        for (const line of discovery.lines) process.stdout.write(`${line}\n`)
        return discovery.failed ? 1 : 0
      }
      case 'ca':
        return await caCommand(await loadConfigFile(file), values)
      default:
        return await run(file, values)
    }
  } catch (err) {
    return report(err, verb === 'check' ? process.stdout : process.stderr)
  }
}

/** `sidekey audit [VERB]`: each report loads only its own module. */
async function audit (args: string[]): Promise<number> {
  const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }
  switch (args[0]) {
    case 'scopes': return (await import('./reports/scopes.js')).scopesCommand(args.slice(1), io)
    case 'tasks': return (await import('./reports/tasks.js')).tasksCommand(args.slice(1), io)
    case 'verify': return (await import('./reports/verify/command.js')).verifyCommand(args.slice(1), io)
    case 'inventory': return (await import('./reports/inventory-report.js')).inventoryCommand(args.slice(1), io)
    case 'report': return (await import('./reports/report/report.js')).reportCommand(args.slice(1), io)
    default: return (await import('./reports/summary.js')).auditCommand(args, io)
  }
}

/** `sidekey ca`: create (never replace) the CA, or replace it on --rotate saying what that breaks; print its path. */
async function caCommand (config: Readonly<Config>, values: { bundle?: string, rotate?: boolean }): Promise<number> {
  await preflight(config)
  const before = await loadCa(config.ca.dir)
  const rotate = values.rotate === true && before !== undefined
  // The same constraints as `run`, so a CA made here is the one `run` keeps.
  const ca = await loadOrCreateCa({ dir: config.ca.dir, validityMs: config.ca.validity, ...caConstraints(config), rotate })
  const out = process.stdout
  out.write(ca.certPath + '\n')
  if (values.bundle !== undefined) {
    const bundle = await writeCaBundle(values.bundle, ca.certPem)
    out.write(`bundle: ${bundle.path} (roots from ${bundle.source === 'node' ? "Node's built-in Mozilla list: no system store found" : bundle.source}, plus the CA)\n`)
  }
  if (rotate) {
    out.write(`rotated: ${before.fingerprint256} -> ${ca.fingerprint256}\n` +
      `hosts covered before: ${covered(before)}\nhosts covered now: ${covered(ca)}\n` +
      'restart every running sidekey using this CA directory (it keeps presenting the old CA until then), and give every ' +
      `agent that trusted the old CA the new ${ca.certPath}${values.bundle === undefined ? ' (or a bundle: sidekey ca --bundle OUT)' : ` or ${values.bundle}`}, then restart those agents\n`)
    return 0
  }
  const outside = uncoveredTools(config, ca)
  if (outside.length > 0) process.stderr.write(`sidekey: warning: ${outside.map((n) => `tool ${n}`).join(', ')}: ${CA_COVERAGE_WARNING}\n`)
  return 0
}

function covered (ca: CertificateAuthority): string {
  return ca.nameConstraints === undefined ? 'any (unconstrained)' : ca.nameConstraints.length === 0 ? 'none' : ca.nameConstraints.join(', ')
}

async function run (file: string, values: { listen?: string, admin?: string }): Promise<number> {
  const app = await Sidekey.start({ configFile: file, ...(values.listen === undefined ? {} : { listen: values.listen }), ...(values.admin === undefined ? {} : { admin: values.admin }) })
  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      app.logger.info({ signal }, 'shutting down')
      app.close().then(() => resolve(0), () => resolve(1))
    }
    process.on('SIGTERM', () => stop('SIGTERM'))
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGHUP', () => { app.reload().catch(() => { /* logged by reload; the old config keeps serving */ }) })
  })
}

/** Config problems as `FILE:LINE:COL: message`; other failures as one line with a code. Never a stack trace. */
function report (err: unknown, out: NodeJS.WritableStream): number {
  if (err instanceof ConfigError) {
    for (const line of formatProblems(err.problems)) out.write(line + '\n')
    return 2
  }
  if (err instanceof SidekeyError) {
    process.stderr.write(`sidekey: ${err.message} (${err.code})\n`)
    return err.code === 'SIDEKEY_CONFIG_INVALID' ? 2 : 1
  }
  process.stderr.write(`sidekey: unexpected failure (${(err as { code?: string })?.code ?? (err as Error)?.name ?? 'error'})\n`)
  return 1
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // Anything still holding the loop open after a clean stop (an upstream socket, a watcher) must not keep us up.
  setTimeout(() => process.exit(code), 2000).unref()
}, (err: unknown) => { process.exitCode = report(err, process.stderr) })
