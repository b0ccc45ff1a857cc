import { readFile } from 'node:fs/promises'
import { escapeAllControl } from '../log.js'
import { readLineBytes, type ReadFailure } from './read.js'
import { formatVerifyResult, verifyTrail, type PublicJwk } from './verify.js'

export interface VerifyIo {
  stdin: NodeJS.ReadableStream
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

const USAGE = `usage: sidekey audit verify [--keys JWKS]... [--live] [--json] [FILE...]
  FILE may be gzip; none or - reads stdin. Lines of several instances and runs may be interleaved.
  --keys JWKS  the audit keys to trust (GET /audit-key of each instance; a JWKS, a JWK, or an array of them);
               without it each run's key is trusted on first use
  --live       the trail is still being written: the newest run of an instance may end after its last checkpoint
  --json       the result as JSON
exit 0 intact, 1 not intact (or unreadable), 2 usage
`

/**
 * `sidekey audit verify`: exits 0 with `N events in R runs, M checkpoints, intact`, else 1 naming, per broken run,
 * the first seq that cannot be vouched for and what happened.
 */
export async function verifyCommand (args: readonly string[], io: VerifyIo): Promise<number> {
  const files: string[] = []
  const keyFiles: string[] = []
  let json = false
  let live = false
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--json') json = true
    else if (a === '--live') live = true
    else if (a === '--keys' || a.startsWith('--keys=')) {
      const v = a === '--keys' ? args[++i] : a.slice('--keys='.length)
      if (v === undefined || v === '') return usage(io, '--keys needs a file')
      keyFiles.push(v)
    } else if (a === '-h' || a === '--help') {
      io.stdout.write(USAGE)
      return 0
    } else if (a.startsWith('-') && a !== '-') return usage(io, `unknown option ${escapeAllControl(a)}`)
    else files.push(a)
  }
  if (files.length === 0) files.push('-')
  if (files.filter((f) => f === '-').length > 1) return usage(io, 'stdin (-) given more than once')
  let keys: PublicJwk[] | undefined
  if (keyFiles.length > 0) {
    keys = []
    for (const f of keyFiles) {
      const loaded = await readKeys(f)
      if (typeof loaded === 'string') {
        io.stderr.write(`sidekey audit verify: --keys ${escapeAllControl(f)}: ${loaded}\n`)
        return 2
      }
      keys.push(...loaded)
    }
  }
  const failures: ReadFailure[] = []
  const result = await verifyTrail(readLineBytes(files, io.stdin, { onError: (f) => failures.push(f) }), { ...(keys === undefined ? {} : { keys }), live })
  for (const f of failures) {
    result.intact = false
    result.notes.unshift(`${f.file === '-' ? 'stdin' : f.file}: read failed after ${f.lines} lines (${f.code}): the rest of it was not verified`)
  }
  io.stdout.write(json ? JSON.stringify(result, null, 2) + '\n' : formatVerifyResult(result, escapeAllControl))
  return result.intact ? 0 : 1
}

function usage (io: VerifyIo, why: string): number {
  io.stderr.write(`sidekey audit verify: ${why}\n${USAGE}`)
  return 2
}

/** The public keys in a JWKS file (or one JWK, or an array of either); a string says why not. */
async function readKeys (file: string): Promise<PublicJwk[] | string> {
  let v: unknown
  try {
    v = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === undefined ? 'not JSON' : `cannot read (${(err as NodeJS.ErrnoException).code})`
  }
  const out: PublicJwk[] = []
  const visit = (x: unknown): void => {
    if (Array.isArray(x)) { for (const y of x) visit(y); return }
    if (x === null || typeof x !== 'object') return
    const o = x as Record<string, unknown>
    if (Array.isArray(o.keys)) visit(o.keys)
    else if (o.kty === 'OKP' && o.crv === 'Ed25519' && typeof o.x === 'string') out.push(o as PublicJwk)
  }
  visit(v)
  return out.length === 0 ? 'holds no Ed25519 public key (expected the JWKS from GET /audit-key)' : out
}
