import { loadConfigFile } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { preflight } from '../config/preflight.js'
import { CA_COVERAGE_WARNING, caConstraints, uncoveredTools } from '../config/ca-coverage.js'
import { loadCa, loadOrCreateCa, type CertificateAuthority } from '../tls/ca.js'
import { writeCaBundle } from '../tls/bundle.js'
import { CONFIG_OPTION, configPath, stringOption, type Command, type Io } from './command.js'
import { reportFailure } from './failure.js'

/** `sidekey ca`: create (never replace) the CA, or replace it on --rotate saying what that breaks; print its path. */
export const ca: Command = {
  name: 'ca',
  summary: 'create the interception CA (or rotate it) and print its path',
  usage: 'usage: sidekey ca [--config FILE] [--bundle OUT] [--rotate]\n' +
    'ca creates the CA if there is none and never replaces one; --rotate replaces it (every agent must then trust\n' +
    'the new ca.pem, and running sidekeys must be restarted). --bundle writes the system\'s trusted roots plus the CA.',
  options: { ...CONFIG_OPTION, bundle: { type: 'string' }, rotate: { type: 'boolean' } },
  async run (args, io) {
    try {
      return await makeCa(await loadConfigFile(configPath(args, io), io.env), stringOption(args, 'bundle'),
        args.values.rotate === true, io)
    } catch (err) {
      return reportFailure(err, io)
    }
  },
}

async function makeCa (config: Readonly<Config>, bundlePath: string | undefined, rotating: boolean,
  io: Io): Promise<number> {
  await preflight(config)
  const before = await loadCa(config.ca.dir)
  const rotate = rotating && before !== undefined
  // The same constraints as `run`, so a CA made here is the one `run` keeps.
  const ca = await loadOrCreateCa({
    dir: config.ca.dir, validityMs: config.ca.validity, ...caConstraints(config), rotate,
  })
  const out = io.stdout
  out.write(ca.certPath + '\n')
  if (bundlePath !== undefined) {
    const bundle = await writeCaBundle(bundlePath, ca.certPem)
    const source = bundle.source === 'node' ? 'Node\'s built-in Mozilla list: no system store found' : bundle.source
    out.write(`bundle: ${bundle.path} (roots from ${source}, plus the CA)\n`)
  }
  if (!rotate) {
    warnUncovered(config, ca, io)
    return 0
  }
  const give = bundlePath === undefined ? ' (or a bundle: sidekey ca --bundle OUT)' : ` or ${bundlePath}`
  out.write(`rotated: ${before.fingerprint256} -> ${ca.fingerprint256}\n` +
    `hosts covered before: ${covered(before)}\nhosts covered now: ${covered(ca)}\n` +
    'restart every running sidekey using this CA directory (it keeps presenting the old CA until then), and give ' +
    `every agent that trusted the old CA the new ${ca.certPath}${give}, then restart those agents\n`)
  return 0
}

/** A warning naming the tools the CA's name constraints leave out: CONNECTs to them would be refused. */
export function warnUncovered (config: Readonly<Config>, ca: Pick<CertificateAuthority, 'permits'>,
  io: Pick<Io, 'stderr'>): void {
  const outside = uncoveredTools(config, ca).map((n) => `tool ${n}`)
  if (outside.length > 0) io.stderr.write(`sidekey: warning: ${outside.join(', ')}: ${CA_COVERAGE_WARNING}\n`)
}

function covered (ca: CertificateAuthority): string {
  if (ca.nameConstraints === undefined) return 'any (unconstrained)'
  return ca.nameConstraints.length === 0 ? 'none' : ca.nameConstraints.join(', ')
}
