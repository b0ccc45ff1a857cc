/**
 * The request target without query and fragment: what the router matches and what the audit `path` field holds
 * (README, "Audit events").
 *
 * @example
 *   pathWithoutQuery('/v1/chat?key=abc') === '/v1/chat'
 */
export function pathWithoutQuery (pathWithQuery: string): string {
  const q = pathWithQuery.indexOf('?')
  const h = pathWithQuery.indexOf('#')
  const end = q === -1 ? h : h === -1 ? q : Math.min(q, h)
  return end === -1 ? pathWithQuery : pathWithQuery.slice(0, end)
}
