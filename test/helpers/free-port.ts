import { createServer } from 'node:net'

/**
 * A TCP port on 127.0.0.1 free a moment ago: for peers that must be told their port before they start (nats-server,
 * squid) or a listener that must be known to be closed. Prefer listening on port 0 wherever the code allows it.
 */
export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise((resolve) => s.close(resolve))
  return port
}
