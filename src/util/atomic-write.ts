import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/**
 * Write `data` to `path` so that a reader sees either the old file or the whole new one, never a torn write:
 * a temp file in the same directory (created exclusively, born with `mode`), fsynced, then renamed over `path`.
 */
export async function writeFileAtomic (path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', mode)
  try {
    try {
      // The umask may have narrowed `mode` at creation; set it exactly (it can only have removed bits).
      await fh.chmod(mode)
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}
