/**
 * Child process for lazy-x509.test.ts: starts sidekey from the config file in argv[2], then prints which of the
 * CA-creation-only packages this process has loaded. They are CommonJS, so importing them (even from ESM) puts
 * them in require.cache; reflect-metadata also installs Reflect.getMetadata.
 */
import { createRequire } from 'node:module'
import { pino } from 'pino'
import { Sidekey } from '../../src/app.js'

// Without a config (tap given the directory runs every file in it) there is nothing to probe.
const configFile = process.argv[2]
if (configFile !== undefined) await probe(configFile)

async function probe (configFile: string): Promise<void> {
  const app = await Sidekey.start({ configFile, logger: pino({ level: 'silent' }) })
  process.stdout.write(JSON.stringify({
    origin: app.ca.origin,
    peculiar: Object.keys(createRequire(import.meta.url).cache).some((path) => /[\\/]node_modules[\\/]@peculiar[\\/]/.test(path)),
    reflectMetadata: typeof (Reflect as { getMetadata?: unknown }).getMetadata === 'function',
  }) + '\n')
  await app.close()
}
