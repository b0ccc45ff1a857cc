import { createSecureContext, rootCertificates } from 'node:tls'
import { Agent } from 'undici'
import type { Config } from '../../config/schema.js'
import { createLookup } from '../../net/resolver.js'
import { describeError } from '../error-text.js'
import { discover } from './discovery.js'

/** `sidekey check --discover` waits at most this long for each metadata document. */
export const CHECK_DISCOVERY_TIMEOUT_MS = 5_000

/**
 * What `sidekey check` says of the issuers that name a `resource`: without `network`, that discovery happens at run
 * time; with it, what discovery finds now (or why it fails), dialled as `run` would (pins, `egress.block_private`,
 * `upstream_ca_file`). Never sends a client credential: only the metadata GETs.
 *
 * @example
 *   const { lines, failed } = await describeDiscovery(config, { network: true, upstreamCa })
 */
export async function describeDiscovery (config: Readonly<Config>,
  opts: { network: boolean, upstreamCa?: string | undefined }): Promise<{ lines: string[], failed: boolean }> {
  const discovered = Object.entries(config.issuers).flatMap(([name, issuer]) =>
    'resource' in issuer && issuer.resource !== undefined ? [{ name, issuer, resource: issuer.resource }] : [])
  if (discovered.length === 0) return { lines: [], failed: false }
  if (!opts.network) {
    return {
      lines: discovered.map(({ name, resource }) =>
        `issuer ${name}: token endpoint discovered at run time from ${resource} (sidekey check --discover looks now)`),
      failed: false,
    }
  }
  const lookup = createLookup({ pins: config.resolve, blockPrivate: config.egress.block_private })
  const ca = opts.upstreamCa === undefined
    ? {}
    : { secureContext: createSecureContext({ ca: [...rootCertificates, opts.upstreamCa] }) }
  const dispatcher = new Agent({ connect: { lookup, timeout: config.limits.connect_timeout, ...ca } })
  let failed = false
  try {
    const lines = await Promise.all(discovered.map(async ({ name, issuer, resource }) => {
      try {
        const found = await discover({
          resource,
          issuer: issuer.authorization_server,
          dispatcher,
          signal: new AbortController().signal,
          timeoutMs: Math.min(issuer.timeout, CHECK_DISCOVERY_TIMEOUT_MS),
        })
        const { revocationEndpoint } = found
        const revocation = revocationEndpoint === undefined ? '' : `, revocation endpoint ${revocationEndpoint}`
        return `issuer ${name}: resource ${found.resource} -> authorization server ${found.issuer}, ` +
          `token endpoint ${found.tokenEndpoint}${revocation}`
      } catch (err) {
        failed = true
        return `issuer ${name}: discovery failed: ${describeError(err)}`
      }
    }))
    return { lines, failed }
  } finally {
    await dispatcher.close()
  }
}
