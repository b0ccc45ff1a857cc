import { connect as netConnect, type Socket } from 'node:net'
import { TLSSocket, type SecureContext } from 'node:tls'
import type { Server } from 'node:http'
import type { AgentH2 } from './h2.js'
import { TLS_CLIENT_ALERTS, type TlsClientAlert } from '../../audit/events.js'
import { egressDenied, SELF, SidekeyError } from '../../errors.js'
import { normalizeHost } from '../../net/host.js'
import { isOwnAddress } from '../../net/self.js'
import { sendRawError } from '../respond.js'
import { failureCode, upstreamError } from '../upstream/upstream.js'
import { checkPassThrough, type Runtime } from '../runtime.js'
import { ingressEvent } from '../pipeline/context.js'

/** What a socket inside an intercepted tunnel was opened for. */
export interface TunnelContext {
  readonly host: string
  readonly port: number
  readonly tls: boolean
  readonly client: string
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n'

/** A misdirected authority longer than any DNS name is cut in the audit line: the agent controls it. */
export const MAX_REQUESTED = 300

/**
 * Intercepts a CONNECT tunnel to a tool host: answers 200, peeks the first byte, and either terminates TLS with a
 * leaf for exactly the CONNECT target (a different SNI aborts the handshake, threat model: the agent, credential
 * scope) or reads plain HTTP as it is (undici's ProxyAgent tunnels http:// this way). The decrypted stream is
 * handed to `inner`, an http.Server that never listens, with the tunnel's context attached.
 */
export async function intercept (
  rt: Runtime, socket: Socket, head: Buffer, target: { host: string, port: number }, client: string,
  inner: Server, contexts: WeakMap<object, TunnelContext>, h2?: AgentH2
): Promise<void> {
  const limits = rt.config.limits
  socket.setTimeout(limits.idle_timeout, () => socket.destroy())
  socket.write(ESTABLISHED)
  // Before its first byte a tunnel is held to the headers timeout, like a request line: a client that connects and
  // says nothing (or half-closes) must not keep a connection slot for the idle timeout (threat model: the agent,
  // exhaustion).
  const first = head.length > 0 ? head : await firstChunk(socket, limits.headers_timeout)
  if (first === undefined) { socket.destroy(); return }
  socket.unshift(first)
  if (first[0] !== 0x16) {
    contexts.set(socket, { ...target, tls: false, client })
    inner.emit('connection', socket)
    socket.resume()
    return
  }
  socket.pause()
  let context: SecureContext
  try {
    context = await rt.leaves.secureContext(target.host)
  } catch (err) {
    // A plaintext tool's host the CA does not cover, spoken to in TLS: the handshake cannot happen.
    const reason = err instanceof SidekeyError ? err.details.reason : undefined
    if (typeof reason === 'string') {
      const denied = { host: target.host, port: target.port, reason, client, method: 'CONNECT' } as const
      ingressEvent(rt, { event: 'egress.denied', ...denied })
    }
    throw err
  }
  if (socket.destroyed) return
  const tlsSocket = new TLSSocket(socket, {
    isServer: true,
    secureContext: context,
    ALPNProtocols: h2 === undefined ? ['http/1.1'] : ['h2', 'http/1.1'],
    SNICallback: (servername, cb) => {
      let sni: string | undefined
      try { sni = normalizeHost(servername) } catch { sni = undefined }
      if (sni === target.host) { cb(null, context); return }
      // Audited like a misdirected request inside the tunnel (listener.ts); the handshake is aborted.
      handshaking = false
      ingressEvent(rt, {
        event: 'egress.denied',
        host: target.host,
        port: target.port,
        reason: 'misdirected',
        client,
        requested: servername.slice(0, MAX_REQUESTED),
      })
      cb(new SidekeyError('SIDEKEY_MISDIRECTED', 'TLS server name does not match the CONNECT target'), undefined)
    },
  })
  // A handshake that fails on the agent's side (it does not trust sidekey's CA) is reported once, with its alert.
  let handshaking = true
  const failed = (alert: TlsClientAlert): void => {
    if (!handshaking) return
    handshaking = false
    ingressEvent(rt, { event: 'tls.client_error', host: target.host, port: target.port, client, alert })
  }
  const handshake = setTimeout(() => { failed('timeout'); tlsSocket.destroy() }, limits.tls_handshake_timeout)
  handshake.unref()
  tlsSocket.once('secure', () => { handshaking = false; clearTimeout(handshake) })
  tlsSocket.once('close', () => failed('closed'))
  // An agent that ends the connection mid-handshake (it dropped it right after its Finished, or crashed) will send
  // nothing more: without this the socket sits in CLOSE-WAIT, holding its connection slot until the handshake timeout.
  tlsSocket.once('end', () => { if (handshaking) { tlsSocket.destroy(); socket.destroy() } })
  tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
    failed(clientAlert(err)); clearTimeout(handshake); tlsSocket.destroy(); socket.destroy()
  })
  tlsSocket.setTimeout(limits.idle_timeout, () => tlsSocket.destroy())
  contexts.set(tlsSocket, { ...target, tls: true, client })
  if (h2 === undefined) { inner.emit('connection', tlsSocket); return }
  // The protocol is known once the handshake is done: h2 goes to node:http2 (h2.ts), anything else to `inner`.
  tlsSocket.once('secure', () => {
    if (tlsSocket.alpnProtocol === 'h2') h2.accept(tlsSocket, { ...target, tls: true, client })
    else inner.emit('connection', tlsSocket)
  })
}

const ALERTS: ReadonlySet<string> = new Set(TLS_CLIENT_ALERTS)

/** The TLS alert an agent sent (OpenSSL's `ERR_SSL_TLSV1_ALERT_UNKNOWN_CA` is `unknown_ca`), one of a fixed set. */
export function clientAlert (err: NodeJS.ErrnoException): TlsClientAlert {
  const alert = /^ERR_SSL_(?:TLSV1|SSLV3)_ALERT_([A-Z_]+)$/.exec(err.code ?? '')?.[1]?.toLowerCase()
  if (alert !== undefined) return ALERTS.has(alert) ? alert as TlsClientAlert : 'other'
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'closed' : 'other'
}

/** The tunnel's first chunk, or undefined when the client ends, fails or stays silent for `timeoutMs`. */
function firstChunk (socket: Socket, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => { cleanup(); socket.pause(); resolve(chunk) }
    const onEnd = (): void => { cleanup(); resolve(undefined) }
    const timer = setTimeout(onEnd, timeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      socket.off('data', onData); socket.off('end', onEnd); socket.off('close', onEnd); socket.off('error', onEnd)
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
    socket.once('error', onEnd)
  })
}

/** How a blind tunnel reports itself: refused (`egress.denied`), or up or failed (`egress.passed`). */
export interface BlindTunnelAudit {
  denied (reason: string): void
  passed (status: number, error?: string): void
}

/**
 * `egress.unmatched: tunnel`: a blind pipe, no interception and no credential. The destination is checked
 * (IP literals here, names in the lookup) and the socket connects only to the checked address.
 */
export function blindTunnel (
  rt: Runtime, socket: Socket, head: Buffer, target: { host: string, port: number }, requestId: string,
  audit: BlindTunnelAudit
): void {
  const onDenied = audit.denied
  try {
    checkPassThrough(rt, target.host, target.port)
  } catch (err) {
    onDenied('private_address')
    sendRawError(socket, err as SidekeyError, requestId)
    return
  }
  const upstream = netConnect({
    host: target.host, port: target.port, lookup: rt.lookup, timeout: rt.config.limits.connect_timeout,
  })
  const fail = (err: unknown): void => {
    const denied = (err as { code?: string }).code === 'SIDEKEY_EGRESS_DENIED'
    const e = denied ? err as SidekeyError : upstreamError(err)
    if (denied) onDenied('private_address')
    else audit.passed(e.status, failureCode(err))
    sendRawError(socket, e, requestId)
    upstream.destroy()
  }
  const connectTimeout = (): void => fail(new SidekeyError('SIDEKEY_UPSTREAM_TIMEOUT', 'upstream timed out'))
  upstream.once('timeout', connectTimeout)
  upstream.once('error', fail)
  upstream.once('connect', () => {
    // From here on the tunnel is the agent's byte stream: no HTTP answer may be written into it.
    upstream.off('error', fail)
    upstream.off('timeout', connectTimeout)
    // A name may resolve to this machine: judge the address actually dialled, before a byte is written.
    if (rt.ownPorts.has(upstream.remotePort ?? 0) && isOwnAddress(upstream.remoteAddress ?? '')) {
      onDenied('self')
      sendRawError(socket, egressDenied(SELF, 'self'), requestId)
      upstream.destroy()
      return
    }
    upstream.setTimeout(rt.config.limits.idle_timeout, () => { upstream.destroy(); socket.destroy() })
    socket.setTimeout(rt.config.limits.idle_timeout, () => { upstream.destroy(); socket.destroy() })
    socket.write(ESTABLISHED)
    audit.passed(200)
    if (head.length > 0) upstream.write(head)
    socket.pipe(upstream).pipe(socket)
    const close = (): void => { socket.destroy(); upstream.destroy() }
    socket.once('error', close)
    upstream.once('error', close)
    socket.once('close', close)
    upstream.once('close', close)
  })
}
