import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { request, ProxyAgent } from 'undici'
import { decodeJwt } from 'jose'
import { Sidekey } from './app.js'
import { loadConfigFile } from './config/load.js'
import { createLogger } from './audit/log.js'

/**
 * `npm run demo`: the swap end to end on this machine. Starts a local echo tool, sidekey with the default config
 * (on free ports), sends one call with the placeholder through the proxy, and shows what the tool received.
 */
async function demo (): Promise<void> {
  const out = (s: string): boolean => process.stdout.write(s + '\n')
  let seenAuthorization = ''
  const echo = createServer((req, res) => {
    seenAuthorization = req.headers.authorization ?? ''
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ hello: 'from the echo tool', path: req.url }))
  })
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  const echoPort = (echo.address() as AddressInfo).port

  const base = await loadConfigFile('config/sidekey.yaml')
  const tool = base.tools.echo!
  const config = { ...base, tools: { echo: { ...tool, match: { ...tool.match, port: echoPort } } } }
  const audit: string[] = []
  const destination = new Writable({
    write (chunk, _e, cb) { audit.push(...String(chunk).trim().split('\n')); cb() },
  })
  const logger = createLogger({ level: 'info', destination })
  const app = await Sidekey.start({ config, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger })

  const url = `http://echo.sidekey.test:${echoPort}/v1/hello`
  out(`agent  → GET ${url}\n` +
    '         Authorization: Bearer sidekey          (the placeholder; the agent holds no secret)\n' +
    `         via HTTP_PROXY=http://${app.proxyAddress}`)
  const dispatcher = new ProxyAgent({ uri: `http://${app.proxyAddress}`, proxyTunnel: false })
  const res = await request(url, { dispatcher, headers: { authorization: 'Bearer sidekey' } })
  const body = await res.body.text()
  const token = seenAuthorization.replace(/^Bearer /, '')
  const claims = decodeJwt(token)
  out(`\ntool   ← Authorization: Bearer ${token.slice(0, 16)}…  (a JWT minted by sidekey, ${token.length} chars)`)
  const { iss, sub, aud, scope, tool: claimedTool, exp } = claims
  const shown = { iss, sub, aud, scope, tool: claimedTool, exp }
  out(`         claims: ${JSON.stringify(shown)}`)
  out(`agent  ← ${res.statusCode} ${body}`)
  await new Promise((resolve) => setTimeout(resolve, 20))
  const used = audit.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.event === 'credential.used')
  out(`\naudit  : ${JSON.stringify(used)}`)
  out('         (the audit line names the instance and the credential_id — never the token)')
  await app.close()
  echo.close()
}

/**
 * `npm run demo -- --echo`: only the echo tool, on 127.0.0.1:8088 (the default config's demo tool), for the README
 * walkthrough.
 */
async function echoOnly (): Promise<void> {
  const server = createServer((req, res) => {
    const auth = req.headers.authorization ?? '(none)'
    const shown = `${auth.slice(0, 30)}${auth.length > 30 ? '…' : ''}`
    process.stdout.write(`echo tool: ${req.method} ${req.url} authorization: ${shown}\n`)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ method: req.method, path: req.url, authorization: auth }) + '\n')
  })
  await new Promise<void>((resolve) => server.listen(8088, '127.0.0.1', resolve))
  process.stdout.write('echo tool listening on 127.0.0.1:8088 (it prints the Authorization header it receives)\n')
}

(process.argv.includes('--echo') ? echoOnly() : demo()).catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`)
  process.exitCode = 1
})
