import { loadConfigFile } from '../config/load.js'
import { preflight } from '../config/preflight.js'
import { loadCa } from '../tls/ca.js'
import { describeUpstream } from '../proxy/upstream/upstream-target.js'
import { CONFIG_OPTION, configPath, type Command } from './command.js'
import { reportFailure } from './failure.js'
import { warnUncovered } from './ca.js'

/** `sidekey check`: exit 0 when `run` would start on the config, 2 naming each problem, 1 when discovery failed. */
export const check: Command = {
  name: 'check',
  summary: 'validate a config as run would, without starting',
  usage: 'usage: sidekey check [--config FILE] [--no-files] [--discover]\n' +
    '  --no-files  skip checking the files it names (away from its machine)\n' +
    '  --discover  fetch a resource: issuer\'s OAuth metadata now',
  options: { ...CONFIG_OPTION, 'no-files': { type: 'boolean' }, discover: { type: 'boolean' } },
  async run (args, io) {
    const file = configPath(args, io)
    try {
      // Also what `run` would only meet later: files that are missing or unreadable, commands that cannot run.
      const config = await loadConfigFile(file, io.env, { files: args.values['no-files'] !== true })
      // The very checks `run` makes before it touches anything, so check cannot pass a config run refuses.
      const { upstreamCa } = await preflight(config)
      const ca = await loadCa(config.ca.dir)
      if (ca !== undefined) warnUncovered(config, ca, io)
      // Only check loads the Public Suffix List (about 7 MB of RSS): `run` never needs it.
      const { openWildcards, describeOpenWildcard } = await import('../config/public-suffix.js')
      for (const open of openWildcards(config.tools)) {
        io.stderr.write(`sidekey: warning: ${describeOpenWildcard(open)}\n`)
      }
      io.stdout.write(`${file}: ok\n`)
      // Where a tool's credential goes when it is not the host it matches: worth a line an operator reads.
      for (const [name, tool] of Object.entries(config.tools)) {
        const line = describeUpstream(name, tool)
        if (line !== undefined) io.stdout.write(`${line}\n`)
      }
      // Discovery is network: only on request, so check stays usable away from the issuer's network.
      const { describeDiscovery } = await import('../credentials/issuers/discovery-check.js')
      const discovery = await describeDiscovery(config, { network: args.values.discover === true, upstreamCa })
      for (const line of discovery.lines) io.stdout.write(`${line}\n`)
      return discovery.failed ? 1 : 0
    } catch (err) {
      return reportFailure(err, io, io.stdout)
    }
  },
}
