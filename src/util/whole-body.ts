import type { IncomingMessage } from 'node:http'

/**
 * A request body read whole, whatever its framing (Content-Length or chunked): an MCP call or a held call to be
 * judged before it is sent, an admin decision. Undefined once it passes `limit` bytes: such a body is refused, never
 * passed on unread.
 */
export async function readWholeBody (req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) return undefined
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) return undefined
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}
