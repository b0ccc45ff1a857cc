import { Sidekey } from '../app.js'
import { hostPort } from '../config/schema.js'
import { CONFIG_OPTION, configPath, stringOption, type Command } from './command.js'
import { reportFailure } from './failure.js'

/**
 * `sidekey run` (the verb when none is given): serve until SIGTERM or SIGINT, reload on SIGHUP. Loaded with the
 * entry point, unlike the other verbs: it is what every pod starts.
 */
export const run: Command = {
  name: 'run',
  summary: 'serve the proxy and the admin port (the default verb)',
  usage: 'usage: sidekey [run] [--config FILE] [--listen HOST:PORT] [--admin HOST:PORT]\n' +
    '--config defaults to $SIDEKEY_CONFIG, then config/sidekey.yaml; --listen and --admin replace the config\'s ' +
    'listen and admin.listen\n(port 0 picks a free port). SIGHUP reloads the config; SIGTERM drains and exits.',
  options: { ...CONFIG_OPTION, listen: { type: 'string' }, admin: { type: 'string' } },
  async run (args, io) {
    const overrides: { listen?: string, admin?: string } = {}
    for (const flag of ['listen', 'admin'] as const) {
      const v = stringOption(args, flag)
      if (v === undefined) continue
      if (!hostPort.safeParse(v).success) {
        io.stderr.write(`sidekey: --${flag} expects HOST:PORT, got ${JSON.stringify(v)}\n`)
        return 2
      }
      overrides[flag] = v
    }
    let app: Sidekey
    try {
      app = await Sidekey.start({ configFile: configPath(args, io), ...overrides })
    } catch (err) {
      return reportFailure(err, io)
    }
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
  },
}
