import { readFile } from 'node:fs/promises'
import { ConfigError, formatProblems } from '../../config/config-error.js'
import { escapeAllControl } from '../../audit/log.js'
import { readLineBytes, type ReadFailure } from './read.js'
import { formatVerifyResult } from './format.js'
import type { PublicJwk } from './types.js'
import { TrailVerifier } from './verify.js'
import { VERIFY_USAGE as USAGE } from '../usage.js'
import type { AuditIo } from '../input.js'

/**
 * `sidekey audit verify`: exits 0 with `N events in R runs, M checkpoints, intact` when the trail is consistent and
 * authenticated, 3 when it is only consistent, else 1 naming, per broken run, the first seq that cannot be vouched
 * for and what happened, and every event line without a seal.
 */
export async function verifyCommand (args: readonly string[], io: AuditIo): Promise<number> {
  const files: string[] = []
  const keyFiles: string[] = []
  const urls: string[] = []
  let fleetConfig: string | undefined
  let json = false
  let live = false
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    const option = /^(--keys|--from|--fleet)(?:=(.*))?$/s.exec(a)
    if (a === '--json') json = true
    else if (a === '--live') live = true
    else if (option !== null) {
      const v = option[2] ?? args[++i]
      if (v === undefined || v === '') return usage(io, `${option[1]!} needs a value`)
      if (option[1] === '--keys') keyFiles.push(v)
      else if (option[1] === '--from') urls.push(v)
      else if (fleetConfig !== undefined) return usage(io, '--fleet given more than once')
      else fleetConfig = v
    } else if (a === '-h' || a === '--help') {
      io.stdout.write(USAGE)
      return 0
    } else if (a.startsWith('-') && a !== '-') return usage(io, `unknown option ${escapeAllControl(a)}`)
    else files.push(a)
  }
  if (files.length === 0) files.push('-')
  if (files.filter((f) => f === '-').length > 1) return usage(io, 'stdin (-) given more than once')
  let keys: PublicJwk[] | undefined
  const sources = [
    ...keyFiles.map((f) => [`--keys ${f}`, () => readKeys(f)] as const),
    ...urls.map((u) => [`--from ${u}`, () => fetchKeys(u)] as const),
  ]
  for (const [from, load] of sources) {
    const loaded = await load()
    if (typeof loaded === 'string') {
      io.stderr.write(`sidekey audit verify: ${escapeAllControl(from)}: ${loaded}\n`)
      return 2
    }
    keys = [...(keys ?? []), ...loaded]
  }
  let anchors: Array<{ jws: string }> | undefined
  if (fleetConfig !== undefined) {
    const loaded = await publishedCheckpoints(fleetConfig)
    if (typeof loaded === 'string') {
      io.stderr.write(`sidekey audit verify: --fleet ${escapeAllControl(fleetConfig)}: ${loaded}\n`)
      return 2
    }
    anchors = loaded
  }
  const failures: ReadFailure[] = []
  const starts: Array<{ file: string, line: number }> = []
  const locate = (n: number): string => {
    const f = starts.findLast((s) => s.line < n) ?? { file: '-', line: 0 }
    return `line ${n - f.line} of ${f.file === '-' ? 'stdin' : f.file}`
  }
  const verifier = new TrailVerifier({
    ...(keys === undefined ? {} : { keys }), ...(anchors === undefined ? {} : { anchors }), live, locate,
  })
  const lines = readLineBytes(files, io.stdin, {
    onError: (f) => failures.push(f),
    onFile: (file) => starts.push({ file, line: verifier.linesRead }),
  })
  for await (const line of lines) verifier.line(line)
  const result = verifier.finish()
  for (const f of failures) {
    result.intact = false
    result.consistent = false
    result.notes.unshift(`${f.file === '-' ? 'stdin' : f.file}: read failed after ${f.lines} lines (${f.code}): ` +
      'the rest of it was not verified')
  }
  io.stdout.write(json ? JSON.stringify(result, null, 2) + '\n' : formatVerifyResult(result, escapeAllControl))
  return result.intact ? 0 : result.consistent ? 3 : 1
}

function usage (io: AuditIo, why: string): number {
  io.stderr.write(`sidekey audit verify: ${why}\n${USAGE}`)
  return 2
}

/** The public keys in a JWKS file (or one JWK, or an array of either); a string says why not. */
export async function readKeys (file: string): Promise<PublicJwk[] | string> {
  let v: unknown
  try {
    v = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === undefined ? 'not JSON' : `cannot read (${code})`
  }
  return publicKeysIn(v)
}

/** The public keys a running sidekey serves at GET /audit-key; a string says why not. */
async function fetchKeys (url: string): Promise<PublicJwk[] | string> {
  let target: URL
  try {
    target = new URL(url)
  } catch {
    return 'not a URL'
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') return 'not an http(s) URL'
  if (target.pathname === '/' || target.pathname === '') target.pathname = '/audit-key'
  try {
    const res = await fetch(target, { redirect: 'error', signal: AbortSignal.timeout(10_000) })
    if (res.status !== 200) {
      await res.body?.cancel()
      return `answered ${res.status}`
    }
    return publicKeysIn(await res.json())
  } catch (err) {
    const cause = (err as { cause?: { code?: unknown } }).cause?.code
    return `cannot fetch (${typeof cause === 'string' ? cause : (err as Error).name})`
  }
}

/** Every `checkpoint.<instance>` of the fleet bucket named in the config's fleet: section; a string says why not. */
async function publishedCheckpoints (configFile: string): Promise<Array<{ jws: string }> | string> {
  const { fleetOf, withBucket } = await import('../../fleet/cli.js')
  const { values } = await import('../../fleet/operator.js')
  let found: Array<{ jws?: unknown }> = []
  try {
    await withBucket(await fleetOf(configFile), 'audit verify', async (kv) => {
      found = await values<{ jws?: unknown }>(kv, 'checkpoint.>')
      return 0
    })
  } catch (err) {
    if (!(err instanceof ConfigError)) return (err as Error).message
    const noFleet = err.problems.some((p) => p.path === 'fleet' && p.message.endsWith('required key is missing'))
    return noFleet
      ? `${configFile} has no fleet: section`
      : `the config is not valid: ${formatProblems(err.problems).join('; ')}`
  }
  return found.flatMap((v) => typeof v?.jws === 'string' ? [{ jws: v.jws }] : [])
}

/** The Ed25519 public JWKs in a parsed JWKS, JWK, or array of either; a string says why there are none. */
function publicKeysIn (v: unknown): PublicJwk[] | string {
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
