import { raw, statusOf } from '../hardening/helpers.js'
import { completeResponse, exchange } from '../hardening/tunnel-client.js'
import { sidekeyCa, tlsThroughTunnel } from './connect.js'
import type { UpstreamHandler } from './upstream.js'

/** An upstream answer rawGets can wait for: 200 `ok` with content-length, whatever was asked. */
export const answerOk: UpstreamHandler = (_req, res) => {
  res.writeHead(200, { 'content-length': 2 })
  res.end('ok')
}

/** What came back for one GET: the status and the whole answer as latin1 text. */
export interface RawAnswer { status: number | undefined, text: string }
export type RawGet = (path: string) => Promise<RawAnswer>

/**
 * A GET of `path` on `authority` through sidekey, written byte for byte so no client re-encodes the target: as an
 * absolute-form request, and inside an intercepted CONNECT tunnel (TLS to `servername`, trusting sidekey's CA).
 * The answer must carry content-length.
 */
export function rawGets (proxyPort: number, authority: string, servername: string, caDir: string):
Array<[string, RawGet]> {
  const absoluteForm: RawGet = async (path) => await raw(proxyPort,
    `GET http://${authority}${path} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, { until: completeResponse })
  const tunnel: RawGet = async (path) => {
    const socket = await tlsThroughTunnel(proxyPort, authority, { servername, ca: sidekeyCa(caDir) })
    try {
      const { text } = await exchange(socket, `GET ${path} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, completeResponse)
      return { status: statusOf(text), text }
    } finally {
      socket.destroy()
    }
  }
  return [['absolute-form', absoluteForm], ['intercepted CONNECT', tunnel]]
}
