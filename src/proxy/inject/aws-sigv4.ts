import { SignatureV4 } from '@smithy/signature-v4'
import { Hash } from '@smithy/hash-node'
import type { AwsKeySet } from '../../credentials/aws-keys.js'
import { SidekeyError } from '../../errors.js'

/**
 * SigV4 re-signing (loaded only when a tool injects `aws_sigv4`). The agent's SDK signed with placeholder keys;
 * its Authorization, X-Amz-Date and X-Amz-Security-Token are dropped and the request is signed again with the
 * real key set by the AWS SDK's own signer, over the headers the upstream will receive.
 */

class Sha256 extends Hash {
  constructor (secret?: ConstructorParameters<typeof Hash>[1]) { super('sha256', secret) }
}

/** Headers sidekey regenerates: whatever the agent sent for them goes. */
const GENERATED = new Set(['authorization', 'x-amz-date', 'x-amz-security-token', 'date'])
const HEX_SHA256 = /^[0-9a-f]{64}$/
/** Payload hashes the agent may have signed that sidekey can sign again as they are, body unchanged. */
const KEPT_PAYLOAD_HASHES = new Set(['UNSIGNED-PAYLOAD', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'])
/** Services that accept `UNSIGNED-PAYLOAD` over TLS. */
const UNSIGNED_PAYLOAD_SERVICES = new Set(['s3', 's3-object-lambda', 's3express'])

export interface SigV4Target {
  readonly tool: string
  readonly service: string
  readonly region: string
  readonly method: string
  /** Path and query as they go upstream. */
  readonly pathAndQuery: string
  /** The agent's own SigV4 Authorization header, if it sent one (its SignedHeaders list is kept). */
  readonly agentAuthorization: string | undefined
  /** The whole body when it was kept; undefined for no body. */
  readonly body: Buffer | undefined
  /** The body is streamed (too large or unknown length to keep). */
  readonly streamed: boolean
  /** `limits.replay_body_bytes`, for the error that names it. */
  readonly bodyLimit: number
  /** The agent's Content-Length when the upstream receives the same one. */
  readonly contentLength: string | undefined
}

/**
 * Removes the agent's signature headers from `headers` (the flat upstream list, Host included) and appends a
 * fresh signature made with `keys`. Throws a 4xx SidekeyError when the request cannot be signed honestly.
 */
export async function signSigV4 (
  headers: string[], keys: AwsKeySet, target: SigV4Target, now = new Date()
): Promise<void> {
  const toSign: Record<string, string> = {}
  const signedByAgent = signedHeaderList(target.agentAuthorization)
  let agentPayloadHash: string | undefined
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const lower = headers[i]!.toLowerCase()
    if (GENERATED.has(lower)) {
      headers.splice(i, 2)
      continue
    }
    if (lower === 'x-amz-content-sha256') agentPayloadHash = headers[i + 1]!
    if (lower === 'host' || lower === 'x-amz-content-sha256' || signedByAgent === undefined ||
      signedByAgent.has(lower)) {
      // Repeated headers are one comma-joined value in the canonical request.
      toSign[lower] = toSign[lower] === undefined ? headers[i + 1]! : `${headers[i + 1]!},${toSign[lower]}`
    }
  }
  if (target.contentLength !== undefined && (signedByAgent === undefined || signedByAgent.has('content-length'))) {
    toSign['content-length'] = target.contentLength
  }

  // undefined: the signer hashes the kept body and no x-amz-content-sha256 is sent (services other than S3).
  const payloadHash = payloadHashFor(agentPayloadHash, target)
  const added = agentPayloadHash === undefined && payloadHash !== undefined
  if (added) toSign['x-amz-content-sha256'] = payloadHash

  const { path, query } = splitTarget(target.pathAndQuery)
  const signer = new SignatureV4({
    service: target.service,
    region: target.region,
    credentials: {
      accessKeyId: keys.accessKeyId,
      secretAccessKey: keys.secretAccessKey,
      ...(keys.sessionToken === undefined ? {} : { sessionToken: keys.sessionToken }),
    },
    sha256: Sha256,
    // S3 signs the path as sent; every other service signs it escaped once more (the SDK's own split).
    uriEscapePath: !UNSIGNED_PAYLOAD_SERVICES.has(target.service),
    applyChecksum: false,
  })
  const signed = await signer.sign({
    method: target.method,
    protocol: 'https:',
    hostname: toSign.host ?? '',
    path,
    query,
    headers: toSign,
    body: payloadHash === undefined ? target.body : undefined,
  }, { signingDate: now })
  const out = signed.headers
  headers.push('authorization', out.authorization!, 'x-amz-date', out['x-amz-date']!)
  if (out['x-amz-security-token'] !== undefined) headers.push('x-amz-security-token', out['x-amz-security-token'])
  if (added) headers.push('x-amz-content-sha256', payloadHash)
}

/** The payload hash sent as x-amz-content-sha256, or undefined when the signer is to hash the kept body (or none). */
function payloadHashFor (agent: string | undefined, target: SigV4Target): string | undefined {
  if (agent !== undefined) {
    if (HEX_SHA256.test(agent) || KEPT_PAYLOAD_HASHES.has(agent)) return agent
    if (agent.startsWith('STREAMING-')) {
      throw refused(target, `streaming uploads signed chunk by chunk (${agent.slice(0, 60)}) cannot be re-signed; ` +
        'configure the SDK to send UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER ' +
        '(the AWS SDK for JavaScript v3 does over https)')
    }
    throw refused(target, 'x-amz-content-sha256 is neither a SHA-256 hex digest nor UNSIGNED-PAYLOAD')
  }
  if (UNSIGNED_PAYLOAD_SERVICES.has(target.service)) return 'UNSIGNED-PAYLOAD'
  if (!target.streamed) return undefined
  throw refused(target, `the body is larger than limits.replay_body_bytes (${target.bodyLimit} bytes) ` +
    'or of unknown length, and the request carries no x-amz-content-sha256 to sign it with')
}

function refused (target: SigV4Target, why: string): SidekeyError {
  return new SidekeyError('SIDEKEY_BAD_REQUEST', `tool ${target.tool}: cannot re-sign this request: ${why}`,
    { details: { tool: target.tool } })
}

/** `SignedHeaders=a;b;c` of the agent's SigV4 Authorization, lower-cased; undefined when there is none. */
function signedHeaderList (authorization: string | undefined): Set<string> | undefined {
  if (authorization === undefined) return undefined
  const m = /SignedHeaders=([^,\s]+)/.exec(authorization)
  return m === null ? undefined : new Set(m[1]!.toLowerCase().split(';'))
}

/** The path as sent, and the query decoded the way the signer wants it (it escapes every name and value itself). */
function splitTarget (pathAndQuery: string): { path: string, query: Record<string, string | string[]> } {
  const q = pathAndQuery.indexOf('?')
  const query: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>
  if (q < 0) return { path: pathAndQuery, query }
  for (const part of pathAndQuery.slice(q + 1).split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const name = decode(eq < 0 ? part : part.slice(0, eq))
    const value = eq < 0 ? '' : decode(part.slice(eq + 1))
    const prev = query[name]
    query[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return { path: pathAndQuery.slice(0, q), query }
}

function decode (text: string): string {
  try { return decodeURIComponent(text) } catch { return text }
}
