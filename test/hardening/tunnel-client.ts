import type * as net from 'node:net'
import type * as tls from 'node:tls'

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
    socket.resume()
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
