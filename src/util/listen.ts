import type { AddressInfo, Server } from 'node:net'

/** Binds `server` and resolves with the address actually bound (port 0 picks one); rejects on EADDRINUSE etc. */
export function listen (server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}
