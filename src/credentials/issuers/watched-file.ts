import { watch, type FSWatcher } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { IssuerError } from '../../errors.js'
import { MAX_TOKEN_BYTES } from './token-value.js'
import { errorCode } from '../../errors.js'

/**
 * A small secret file (client secret, subject token, key, mounted token) read again only when it changed:
 * each `read()` stats the path (following symlinks, so a Kubernetes `..data` swap shows as a new inode) and
 * re-reads when device, inode, size, mtime or ctime differ from the last read. Trailing newlines are dropped.
 *
 * @example
 *   const subject = new FileSource('/var/run/secrets/tokens/agent', 'subject_token_file')
 *   const { text } = await subject.read()
 */
export class FileSource {
  readonly path: string
  /** The config key naming the file, for error messages. */
  readonly label: string
  readonly #maxBytes: number
  #stamp: string | undefined
  #text: string | undefined

  constructor (path: string, label: string, maxBytes = MAX_TOKEN_BYTES) {
    this.path = path
    this.label = label
    this.#maxBytes = maxBytes
  }

  /** The current content; `changed` is true when it differs from what the previous successful read returned. */
  async read (): Promise<{ text: string, changed: boolean }> {
    let stamp: string
    let buf: Buffer
    try {
      const st = await stat(this.path, { bigint: true })
      if (!st.isFile()) {
        throw new IssuerError('SIDEKEY_ISSUER_FAILED', `${this.label} ${this.path} is not a regular file`)
      }
      stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
      if (stamp === this.#stamp && this.#text !== undefined) return { text: this.#text, changed: false }
      if (st.size > BigInt(this.#maxBytes)) throw this.#tooLarge()
      buf = await readFile(this.path)
    } catch (err) {
      if (err instanceof IssuerError) throw err
      throw new IssuerError('SIDEKEY_ISSUER_FAILED', `${this.label} ${this.path} cannot be read (${errorCode(err)})`)
    }
    // The file may have grown between stat and read.
    if (buf.length > this.#maxBytes) throw this.#tooLarge()
    const text = buf.toString('utf8').replace(/[\r\n]+$/, '')
    const changed = text !== this.#text
    this.#stamp = stamp
    this.#text = text
    return { text, changed }
  }

  #tooLarge (): IssuerError {
    return new IssuerError('SIDEKEY_ISSUER_FAILED', `${this.label} ${this.path} is larger than ${this.#maxBytes} bytes`)
  }
}

/**
 * Watches the directory holding `path` and calls `onEvent` (debounced) after anything happened in it.
 * Watching the directory, not the file, is what sees atomic replacements: a rename over the file (Vault Agent,
 * editors) and the Kubernetes `..data` symlink swap both leave a watch on the old inode silent.
 * The debounce uses real timers on purpose: it coalesces file-system events, it does not schedule credentials.
 */
export class DirectoryWatcher {
  readonly #dir: string
  readonly #onEvent: () => void
  readonly #debounceMs: number
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor (path: string, onEvent: () => void, debounceMs = 50) {
    this.#dir = dirname(path)
    this.#onEvent = onEvent
    this.#debounceMs = debounceMs
  }

  /** Starts watching when not already watching; returns whether a watch is active (the directory may not exist yet). */
  ensure (): boolean {
    if (this.#closed) return false
    if (this.#watcher !== undefined) return true
    try {
      const watcher = watch(this.#dir, { persistent: false }, () => { this.#schedule() })
      // The directory went away or the watch broke: drop it; the next ensure() (on the next fetch) retries.
      watcher.on('error', () => { this.#drop(watcher) })
      this.#watcher = watcher
      return true
    } catch {
      return false
    }
  }

  close (): void {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#watcher !== undefined) this.#drop(this.#watcher)
  }

  #drop (watcher: FSWatcher): void {
    watcher.close()
    if (this.#watcher === watcher) this.#watcher = undefined
  }

  #schedule (): void {
    if (this.#closed) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (!this.#closed) this.#onEvent()
    }, this.#debounceMs)
    this.#timer.unref()
  }
}
