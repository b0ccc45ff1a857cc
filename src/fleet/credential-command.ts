import type { Logger } from 'pino'
import type { CredentialProvider } from '../credentials/provider.js'
import type { VerifiedCommand } from './command.js'
import { revokeResult, type RevokeResult } from './revoke-result.js'

/**
 * Runs a revoke or rotate; resolves to what it really did (a revoke may run and still revoke nothing).
 * `publishJwks` runs after a revoke, so the bucket stops listing a dropped local_jwt key.
 */
export async function runCredentialCommand (
  cmd: VerifiedCommand,
  credentials: Pick<CredentialProvider, 'rotate' | 'revoke' | 'status'>,
  logger: Logger,
  publishJwks: () => Promise<void>
): Promise<RevokeResult> {
  if (cmd.action === 'revoke') {
    const outcomes = await credentials.revoke(cmd.tool)
    const issuer = outcomes.find((o) => o.issuerError !== undefined)
    if (issuer !== undefined) {
      logger.warn({ tool: cmd.tool, error: issuer.issuerError },
        'fleet revoke: the issuer did not confirm the revocation')
    }
    await publishJwks()
    return revokeResult(outcomes)
  }
  const tools = cmd.tool === '*' ? Object.keys(credentials.status()) : [cmd.tool]
  const results = await Promise.allSettled(tools.map((t) => credentials.rotate(t)))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed === undefined) return { result: 'applied' }
  return { result: 'failed', error: (failed.reason as { code?: string }).code ?? 'SIDEKEY_INTERNAL' }
}
