import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * `CONNECT authority` written on a raw connection to the proxy, as an agent's HTTP client writes it; resolves with
 * the tunnel once the proxy answered 2xx (bytes that came after the answer are put back), rejects with the status
 * line otherwise. For a refusal the test wants to read, write the CONNECT with `raw()` instead.
 */
export function connectTunnel (proxyPort: number, authority: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port: proxyPort })
    let head = ''
    const onData = (c: Buffer): void => {
      head += c.toString('latin1')
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('close', onClose)
      if (!/^HTTP\/1\.1 2\d\d/.test(head)) {
        socket.destroy()
        reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`))
        return
      }
      socket.pause()
      const rest = Buffer.from(head.slice(end + 4), 'latin1')
      if (rest.length > 0) socket.unshift(rest)
      resolve(socket)
    }
    const onClose = (): void => reject(new Error(`closed before an answer to CONNECT: ${JSON.stringify(head)}`))
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', onClose)
    socket.once('connect', () => socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`))
  })
}

/** How the agent's TLS inside the tunnel is set up: the CA it trusts (PEM), the SNI it sends, the ALPN it offers. */
export interface TunnelTls {
  ca: string
  /** Sent as SNI; none when undefined. */
  servername?: string | undefined
  /** http/1.1 unless given. */
  alpn?: string[]
}

/** TLS inside a CONNECT tunnel; resolves once the handshake verified the proxy's leaf, rejects when it fails. */
export async function tlsThroughTunnel (proxyPort: number, authority: string, opts: TunnelTls): Promise<TLSSocket> {
  const socket = await connectTunnel(proxyPort, authority)
  socket.on('error', () => { /* surfaces on the TLS socket */ })
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      socket,
      ca: opts.ca,
      ...(opts.servername === undefined ? {} : { servername: opts.servername }),
      ALPNProtocols: opts.alpn ?? ['http/1.1'],
    })
    const onError = (err: Error): void => { socket.destroy(); reject(err) }
    const onClose = (): void => reject(new Error('tunnel closed during the TLS handshake'))
    s.once('error', onError)
    socket.once('close', onClose)
    // Past the handshake, errors and the close are the caller's to handle.
    s.once('secureConnect', () => { s.off('error', onError); socket.off('close', onClose); resolve(s) })
  })
}

/** The CA certificate (PEM) a sidekey made in `caDir`: what an agent is told to trust. */
export function sidekeyCa (caDir: string): string {
  return readFileSync(join(caDir, 'ca.pem'), 'utf8')
}
