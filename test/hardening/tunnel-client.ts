import * as net from 'node:net'
import * as tls from 'node:tls'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** Opens `CONNECT authority` on the proxy and resolves with the socket once the proxy answered 2xx. */
export function connectTunnel (proxyPort: number, authority: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: proxyPort })
    let head = ''
    const onData = (c: Buffer): void => {
      head += c.toString('latin1')
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      if (!/^HTTP\/1\.1 2\d\d/.test(head)) { socket.destroy(); reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`)); return }
      const rest = Buffer.from(head.slice(end + 4), 'latin1')
      if (rest.length > 0) socket.unshift(rest)
      resolve(socket)
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('connect', () => socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`))
  })
}

/** TLS through an intercepted tunnel, trusting sidekey's CA. Rejects when the handshake fails. */
export async function tlsThroughTunnel (proxyPort: number, authority: string, servername: string | undefined, caDir: string): Promise<tls.TLSSocket> {
  const socket = await connectTunnel(proxyPort, authority)
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket, ca: readFileSync(join(caDir, 'ca.pem'), 'utf8'), ...(servername === undefined ? {} : { servername }), ALPNProtocols: ['http/1.1'] })
    s.once('secureConnect', () => resolve(s))
    s.once('error', (err) => { socket.destroy(); reject(err) })
    socket.once('close', () => reject(new Error('tunnel closed during handshake')))
  })
}

/** Writes `data` on an open stream and collects the answer until it closes, `until` holds, or `waitMs` passes. */
export function exchange (socket: net.Socket | tls.TLSSocket, data: string, until: (text: string) => boolean, waitMs = 5000): Promise<{ text: string, closed: boolean }> {
  return new Promise((resolve) => {
    let text = ''
    let done = false
    const finish = (closed: boolean): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.off('data', onData)
      resolve({ text, closed })
    }
    const onData = (c: Buffer): void => { text += c.toString('latin1'); if (until(text)) finish(false) }
    const timer = setTimeout(() => finish(false), waitMs)
    socket.on('data', onData)
    socket.once('close', () => finish(true))
    socket.on('error', () => {})
    socket.write(data)
  })
}

/** True once `text` holds a complete response with a content-length body. */
export function completeResponse (text: string): boolean {
  const end = text.indexOf('\r\n\r\n')
  if (end < 0) return false
  const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))
  return len !== null && text.length >= end + 4 + Number(len[1])
}
