import { createHash } from 'node:crypto'
import type { FileIssuerConfig } from '../../config/schema.js'
import { IssuerError } from '../../errors.js'
import type { Issuer, IssuerFactory } from '../issuer.js'
import { awsKeyCredential, isAwsKeyDocument } from '../aws-keys.js'
import { issuedCredential, jwtFacts, usableToken } from './token-value.js'
import { DirectoryWatcher, FileSource } from './watched-file.js'

/**
 * `file`: a secret kept fresh by something else (a Kubernetes Secret mount, a Vault Agent template). `fetch()`
 * reads `path` (trailing newlines dropped), or the top-level `json_field` of its JSON; the expiry is the JWT
 * `exp` when the token is a JWT, else none. The file's directory is watched, so atomic replacements and
 * `..data` symlink swaps are seen, and `onChange` listeners fire (debounced) when the content really changed.
 *
 * @example
 *   const issuer = createFileIssuer('mounted', { type: 'file', path: '/run/secrets/search-api-key' }, deps)
 *   issuer.onChange?.(() => refreshNow())
 */
export const createFileIssuer: IssuerFactory<FileIssuerConfig> = (_name, config, deps): Issuer => {
  const source = new FileSource(config.path, 'path')
  // The watcher reads through its own source and remembers a digest of what it last saw: a fetch that already
  // read the new content must not hide the change from the other holders of this issuer's credentials.
  const watched = new FileSource(config.path, 'path')
  const listeners: Array<() => void> = []
  let seen: string | null | undefined // undefined: no baseline yet; null: the file could not be read then
  let closed = false

  const check = async (): Promise<void> => {
    let digest: string | null
    try {
      digest = createHash('sha256').update((await watched.read()).text).digest('hex')
    } catch {
      digest = null
    }
    if (closed) return
    if (seen === undefined) {
      seen = digest
      return
    }
    // An unreadable moment (mid-write, mid-swap) is not a change; the next event shows the final state.
    if (digest === null || digest === seen) return
    seen = digest
    for (const listener of listeners) {
      try {
        listener()
      } catch {
        // A listener's failure is its own; the others still run.
      }
    }
  }
  const watcher = new DirectoryWatcher(config.path, () => { void check() })
  let baseline = watcher.ensure() ? check() : undefined

  return {
    type: 'file',
    async fetch () {
      // The directory may not have existed at start, or its watch broke: watch it again, baseline first.
      if (watcher.ensure() && baseline === undefined) baseline = check()
      await baseline
      const issuedAt = deps.clock.now()
      const { text } = await source.read()
      if (text.length === 0) throw new IssuerError('SIDEKEY_ISSUER_FAILED', `path ${config.path} is empty`)
      if (config.json_field === undefined) {
        const keys = awsKeyDocument(text)
        if (keys !== undefined) return awsKeyCredential(keys, issuedAt, `path ${config.path}`)
      }
      const value = config.json_field === undefined
        ? usableToken(text, `path ${config.path}`)
        : fieldOf(text, config.json_field, config.path)
      const facts = jwtFacts(value)
      if (facts?.expiresAt !== undefined && !(facts.expiresAt > issuedAt)) {
        throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `path ${config.path} holds a JWT that is already expired`)
      }
      return issuedCredential(value, issuedAt, facts?.expiresAt, facts)
    },
    onChange (listener) {
      listeners.push(listener)
    },
    close () {
      closed = true
      watcher.close()
      listeners.length = 0
    },
  }
}

function fieldOf (text: string, field: string, path: string): string {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `path ${path} is not JSON (json_field is set)`)
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json) || !Object.hasOwn(json, field)) {
    throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `path ${path} has no field ${JSON.stringify(field)}`)
  }
  return usableToken((json as Record<string, unknown>)[field], `field ${JSON.stringify(field)} of ${path}`)
}

/** The file's JSON when it is an AWS key set (`credential_process` shape), else undefined: the file is a token. */
function awsKeyDocument (text: string): Record<string, unknown> | undefined {
  if (!text.trimStart().startsWith('{')) return undefined
  try {
    const json: unknown = JSON.parse(text)
    return isAwsKeyDocument(json) ? json : undefined
  } catch {
    return undefined
  }
}
