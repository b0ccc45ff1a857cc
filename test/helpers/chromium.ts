import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket } from 'undici'

/**
 * Headless Debian chromium driven over the DevTools protocol (WebSocket from undici: Node 20 has no global one).
 * `open()` loads a URL with console and exception capture on from the first byte, then `evaluate()` reads the DOM
 * and `screenshot()` takes a PNG. Every wait is bounded.
 */
export interface Page {
  /** Console errors, uncaught exceptions and error log entries, as text. */
  readonly errors: string[]
  evaluate<T> (expression: string): Promise<T>
  /**
   * Lays the page out at `width` CSS pixels, as a phone would with `mobile` (the page's viewport meta honoured);
   * resolves once the new width is in effect.
   */
  resize (width: number, height: number, mobile?: boolean): Promise<void>
  screenshot (): Promise<Buffer>
  close (): Promise<void>
}

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--remote-debugging-port=0', '--window-size=820,1400']

export async function openPage (binary: string, url: string, timeoutMs = 30_000): Promise<Page> {
  const profile = await mkdtemp(join(tmpdir(), 'sidekey-chromium-'))
  const child = spawn(binary, [...FLAGS, `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] })
  const deadline = setTimeout(() => child.kill('SIGKILL'), timeoutMs * 2)
  const stop = async (): Promise<void> => {
    clearTimeout(deadline)
    child.kill('SIGKILL')
    await rm(profile, { recursive: true, force: true }).catch(() => {})
  }
  try {
    const browserWs = await devtoolsUrl(child, timeoutMs)
    const port = new URL(browserWs).port
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<{ type: string, webSocketDebuggerUrl: string }>
    const target = targets.find((t) => t.type === 'page')
    if (target === undefined) throw new Error('chromium opened no page')
    const cdp = await Cdp.connect(target.webSocketDebuggerUrl, timeoutMs)
    const errors: string[] = []
    cdp.on('Runtime.consoleAPICalled', (p) => { if (p.type === 'error' || p.type === 'assert') errors.push(`console.${String(p.type)}: ${JSON.stringify(p.args)}`) })
    cdp.on('Runtime.exceptionThrown', (p) => errors.push(`exception: ${JSON.stringify(p.exceptionDetails)}`))
    cdp.on('Log.entryAdded', (p) => { const e = p.entry as { level: string, text: string, url?: string }; if (e.level === 'error') errors.push(`log: ${e.text} ${e.url ?? ''}`) })
    await cdp.send('Runtime.enable')
    await cdp.send('Log.enable')
    await cdp.send('Page.enable')
    const loaded = cdp.once('Page.loadEventFired', timeoutMs)
    await cdp.send('Page.navigate', { url })
    await loaded
    const evaluate = async <T>(expression: string): Promise<T> => {
      const r = await cdp.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })
      return (r as { result: { value: T } }).result.value
    }
    return {
      errors,
      evaluate,
      async resize (width: number, height: number, mobile = false): Promise<void> {
        await cdp.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile })
        await evaluate('new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))')
      },
      async screenshot (): Promise<Buffer> {
        const r = await cdp.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: false }) as { data: string }
        return Buffer.from(r.data, 'base64')
      },
      async close (): Promise<void> { cdp.close(); await stop() },
    }
  } catch (err) {
    await stop()
    throw err
  }
}

function devtoolsUrl (child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => reject(new Error(`chromium printed no DevTools URL: ${text.slice(-500)}`)), timeoutMs)
    child.stderr!.on('data', (c: Buffer) => {
      text += c.toString()
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(text)
      if (m !== null) { clearTimeout(timer); resolve(m[1]!) }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`chromium exited ${code}: ${text.slice(-500)}`)) })
  })
}

type Params = Record<string, unknown>

class Cdp {
  #id = 0
  readonly #calls = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  readonly #listeners = new Map<string, Array<(p: Params) => void>>()
  readonly #ws: WebSocket

  private constructor (ws: WebSocket) {
    this.#ws = ws
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(String(ev.data)) as { id?: number, result?: unknown, error?: { message: string }, method?: string, params?: Params }
      if (msg.id !== undefined) {
        const call = this.#calls.get(msg.id)
        this.#calls.delete(msg.id)
        if (msg.error !== undefined) call?.reject(new Error(msg.error.message))
        else call?.resolve(msg.result)
      } else if (msg.method !== undefined) for (const l of this.#listeners.get(msg.method) ?? []) l(msg.params ?? {})
    })
  }

  static connect (url: string, timeoutMs: number): Promise<Cdp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      const timer = setTimeout(() => { ws.close(); reject(new Error('DevTools WebSocket did not open')) }, timeoutMs)
      ws.addEventListener('open', () => { clearTimeout(timer); resolve(new Cdp(ws)) })
      ws.addEventListener('error', () => { clearTimeout(timer); reject(new Error('DevTools WebSocket failed')) })
    })
  }

  send (method: string, params: Params = {}): Promise<unknown> {
    const id = ++this.#id
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject })
      this.#ws.send(JSON.stringify({ id, method, params }))
    })
  }

  on (method: string, listener: (p: Params) => void): void {
    const list = this.#listeners.get(method) ?? []
    list.push(listener)
    this.#listeners.set(method, list)
  }

  once (method: string, timeoutMs: number): Promise<Params> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms`)), timeoutMs)
      this.on(method, (p) => { clearTimeout(timer); resolve(p) })
    })
  }

  close (): void { this.#ws.close() }
}
