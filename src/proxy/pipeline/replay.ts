import { bearerChallenge } from '../../credentials/challenge.js'
import { isNonceChallenge } from '../../credentials/dpop.js'
import type { Credential } from '../../credentials/provider.js'
import type { UpstreamExchange } from '../upstream/exchange.js'
import type { RoutedContext } from './context.js'
import type { CredentialSource } from './credential.js'

/** What a replay needs: the first answer, a way to send again, and whether the body can be sent again. */
export interface ReplayInput {
  readonly response: UpstreamExchange
  readonly credential: Credential
  readonly send: (credential: Credential) => Promise<UpstreamExchange>
  /** The body was streamed, not kept: it cannot be sent a second time. */
  readonly streamed: boolean
}

export interface ReplayResult {
  readonly response: UpstreamExchange
  readonly credential: Credential
  readonly replayed: boolean
}

/**
 * The answers a credential can fix by itself, each retried at most once, as undici composes its retries as
 * interceptors: a DPoP nonce challenge (RFC 9449 §9: the same credential, with the tool's nonce in the proof), then
 * a 403 `insufficient_scope` (a stepped-up credential, where the issuer allows that scope) or a 401 (a fresh
 * credential: a rotated or revoked one is replaced; a per-call token is never reused).
 */
export async function replayOnce (
  ctx: RoutedContext, source: CredentialSource, input: ReplayInput
): Promise<ReplayResult> {
  let { response } = input
  const { credential, send, streamed } = input
  const challenged = response.statusCode === 401 && isNonceChallenge(response.headerObject())
  if (credential.dpop?.observe(source.origin, response.headerObject(), challenged) === true && !streamed) {
    await response.dump()
    response = await send(credential)
  }
  const { rt, tool } = ctx
  if (response.statusCode === 403 && !streamed) {
    // RFC 6750 §3.1 insufficient_scope: asked once for the named scope, when the issuer's step_up_scopes allow it.
    const challenge = bearerChallenge(response.headerObject()['www-authenticate'])
    const scope = challenge?.error === 'insufficient_scope' ? challenge.scope : undefined
    const stepped = scope === undefined ? undefined : await rt.credentials.stepUp(tool.name, scope)
    if (stepped === undefined) return { response, credential, replayed: false }
    await response.dump()
    return { response: await send(stepped), credential: stepped, replayed: true }
  }
  if (response.statusCode !== 401) return { response, credential, replayed: false }
  if (streamed) {
    // No replay, but the rejected credential is still refreshed for the next call.
    if (!source.perCall) void rt.credentials.refreshRejected(tool.name, credential.id).catch(() => {})
    return { response, credential, replayed: false }
  }
  const fresh = source.perCall ? source.next() : await rt.credentials.refreshRejected(tool.name, credential.id)
  if (fresh === undefined || fresh.id === credential.id) return { response, credential, replayed: false }
  await response.dump()
  return { response: await send(fresh), credential: fresh, replayed: true }
}
