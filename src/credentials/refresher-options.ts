import type { AuditSink } from '../audit/events.js'
import type { SidekeyError } from '../errors.js'
import type { Tracing } from '../tracing/index.js'
import type { Clock } from '../util/clock.js'
import type { Issuer } from './issuer.js'
import type { Credential } from './provider.js'

/** Why a credential was fetched; the `reason` of `credential.issued`. */
export type RefreshReason = 'initial' | 'scheduled' | 'rotate' | 'rejected' | 'changed' | 'max_uses' | 'revoke'

export type RefreshOutcome =
  | { readonly ok: true, readonly credential: Credential }
  | { readonly ok: false, readonly error: SidekeyError }

export interface LastRefresh { readonly result: 'success' | 'failure', readonly at: number, readonly error?: string }

/** What a slot hands to its successor on a config reload. */
export interface RefresherState {
  readonly current: Credential | undefined
  readonly previous: Credential | undefined
  readonly lastRefresh: LastRefresh | undefined
}

export interface RefresherOptions {
  readonly issuerName: string
  readonly issuer: Issuer
  /** The tools sharing this credential; the first is named in CredentialRequest.tool and in scheduled events. */
  readonly tools: readonly string[]
  readonly scopes: readonly string[]
  readonly audience: string | undefined
  readonly instanceId: string
  /** Refresh once this fraction of the lifetime has passed... */
  readonly refreshAt: number
  /** ...give or take this fraction of that. */
  readonly refreshJitter: number
  readonly timeoutMs: number
  /** After this many uses of one credential (`use()`), a refresh starts in the background. */
  readonly maxUses?: number | undefined
  readonly clock: Clock
  readonly audit: AuditSink
  readonly random: () => number
  readonly carried?: RefresherState
  readonly tracing?: Tracing | undefined
}
