import type { Gauge } from 'prom-client'
import type { Clock } from '../util/clock.js'
import type { CaExpirySource, CredentialStatusSource } from './sources.js'

/** Scrape-time readers of the credential and CA gauges; a source that throws leaves its gauge empty. */

export function setCredentialGauge (
  gauge: Gauge<'tool'>, credentials: CredentialStatusSource | undefined,
  field: 'age_seconds' | 'expires_in_seconds', toolLabel: (tool: string) => string
): void {
  gauge.reset()
  const status = safeStatus(credentials)
  if (status === undefined) return
  for (const [tool, s] of Object.entries(status)) {
    const v = s[field]
    if (typeof v === 'number' && Number.isFinite(v)) gauge.set({ tool: toolLabel(tool) }, v)
  }
}

export function setCaGauge (
  gauge: Gauge, ca: { readonly source: CaExpirySource, readonly clock: Clock } | undefined
): void {
  // An unlabelled gauge resets to 0; with no CA bound there must be no sample rather than "expired".
  gauge.reset()
  const left = ca === undefined ? NaN : (ca.source.notAfter.getTime() - ca.clock.now()) / 1000
  if (Number.isFinite(left)) gauge.set(Math.floor(left))
  else gauge.remove({})
}

export function setReadyGauge (
  gauge: Gauge<'tool'>, provider: CredentialStatusSource | undefined, configured: readonly string[]
): void {
  gauge.reset()
  if (provider === undefined) return
  let unready: Set<string>
  try { unready = new Set(provider.unready()) } catch { return }
  for (const tool of configured) gauge.set({ tool }, unready.has(tool) ? 0 : 1)
}

function safeStatus (credentials: CredentialStatusSource | undefined):
  ReturnType<CredentialStatusSource['status']> | undefined {
  try { return credentials?.status() } catch { return undefined }
}
