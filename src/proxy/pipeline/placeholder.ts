import type { PlaceholderState } from '../../audit/events.js'
import { classifyPlaceholder, wholeValue } from '../headers.js'
import { awsAccessKeyId, queryParam } from '../inject/inject.js'
import type { RoutedContext } from './context.js'

/**
 * What the agent sent where the credential goes: every spelling of the query parameter, the access key id of its
 * SigV4 signature, or (`stripped`, from headers.ts) the headers the tool strips.
 */
export function placeholderState (ctx: RoutedContext, stripped: PlaceholderState): PlaceholderState {
  const { config } = ctx.tool
  const { query, aws_sigv4: sigv4 } = config.inject
  if (query !== undefined) return classifyPlaceholder(queryParam(ctx.path, query), config.placeholder, wholeValue)
  if (sigv4 === undefined) return stripped
  const keyId = awsAccessKeyId(ctx.req.headers.authorization)
  return classifyPlaceholder(keyId === undefined ? undefined : [keyId], config.placeholder, wholeValue)
}
