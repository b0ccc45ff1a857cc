import { Writable } from 'node:stream'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { request, type Dispatcher } from 'undici'
import { Sidekey, type StartOptions } from '../../src/app.js'
import { readAdminToken } from '../../src/admin/token.js'
import { parseConfig } from '../../src/config/load.js'
import { createLogger } from '../../src/audit/log.js'

/** Every log line sidekey wrote, parsed; `text` is the raw output for secret checks. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = []
  text = ''
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    const s = chunk.toString()
    this.text += s
    for (const line of s.split('\n')) if (line.trim() !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>)
    cb()
  }

  events (name: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.event === name)
  }
}

export interface RunningSidekey {
  app: Sidekey
  log: LogCapture
  /** `http://127.0.0.1:PORT` of the proxy listener. */
  proxyUrl: string
  adminUrl: string
  proxyPort: number
  caDir: string
}

/**
 * Starts sidekey in-process on 127.0.0.1:0 with a YAML config; `{{CA_DIR}}` in the text is replaced by a fresh
 * temp dir. Torn down with the test.
 */
export async function startSidekey (t: Test, yaml: string, opts: Partial<StartOptions> & { env?: NodeJS.ProcessEnv } = {}): Promise<RunningSidekey> {
  const caDir = join(mkdtempSync(join(tmpdir(), 'sidekey-test-')), 'ca')
  const text = yaml.replaceAll('{{CA_DIR}}', caDir)
  const config = parseConfig(text, 'test.yaml', opts.env ?? {})
  const log = new LogCapture()
  const logger = createLogger({ level: 'info', destination: log })
  const app = await Sidekey.start({ config, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger, ...opts })
  t.teardown(() => app.close())
  const proxyPort = Number(app.proxyAddress.split(':').pop())
  return { app, log, proxyUrl: `http://${app.proxyAddress}`, adminUrl: `http://${app.adminAddress}`, proxyPort, caDir }
}

/** Waits until the hub has flushed queued work (detectors run on a later tick). */
export function tick (): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * A POST to a running sidekey's admin port with its admin token, read from where the server and `sidekey admin`
 * read it (`admin.token_file`, else the file sidekey made beside the CA).
 */
export async function adminPost (app: Sidekey, path: string, opts: { dispatcher?: Dispatcher } = {}): Promise<Dispatcher.ResponseData> {
  const authorization = `Bearer ${await readAdminToken(app.config)}`
  return request(`http://${app.adminAddress}${path}`, { method: 'POST', headers: { authorization }, ...opts })
}
