import t from 'tap'
import { Agent } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { UpstreamExchange } from '../../src/proxy/upstream/exchange.js'

/** The upstream exchange's paths the proxy tests reach rarely: interim answers, discarding, cancelling, a Readable body. */
t.test('an upstream exchange: head, fields, dump, stream, cancel and release', async (t) => {
  const big = Buffer.alloc(300 * 1024, 'b')
  const up = await startUpstream({
    handler: (req, res) => {
      if (req.url === '/interim') res.writeProcessing()
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.end(big)
        return
      }
      if (req.url === '/slow') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('first')
        return // never ends: only a cancel finishes it
      }
      res.setHeader('set-cookie', ['a=1', 'b=2'])
      res.writeHead(200, { 'content-type': 'text/plain', 'X-Mixed-Case': 'v' })
      res.end('hello')
    },
  })
  const agent = new Agent()
  t.teardown(async () => { await agent.close(); await up.close() })
  const origin = `http://127.0.0.1:${up.port}`
  const start = (path: string): UpstreamExchange => UpstreamExchange.start(agent, { origin, path, method: 'GET', headers: [] })

  const interim = await start('/interim').head
  t.equal(interim.statusCode, 200, 'a 102 before the answer is skipped')
  t.equal(interim.field('x-mixed-case'), 'v', 'names are lowercased')
  t.equal(interim.field('set-cookie'), 'a=1,b=2', 'repeated fields joined')
  t.same(interim.headerObject()['set-cookie'], ['a=1', 'b=2'])
  t.equal(interim.field('absent'), undefined)
  const chunks: Buffer[] = []
  for await (const c of interim.stream()) chunks.push(c as Buffer)
  t.equal(Buffer.concat(chunks).toString(), 'hello', 'the body as a Readable')

  const dumped = await start('/big').head
  await dumped.dump()
  t.pass('a body over the dump limit is cut, and dump() still resolves')

  const slow = await start('/slow').head
  const failed = new Promise<Error>((resolve) => slow.attach({ data: () => true, end: () => {}, error: resolve }))
  slow.cancel()
  t.equal((await failed).name, 'AbortError', 'a cancel mid-body reaches the reader as an AbortError')
  slow.cancel() // after the failure: a no-op

  const early = new UpstreamExchange()
  early.cancel()
  agent.dispatch({ origin, path: '/', method: 'GET', headers: [] }, early as never)
  await t.rejects(early.head, { name: 'AbortError' }, 'cancelled before it connected: the head rejects')

  const abandoned = await start('/slow').head
  abandoned.release()
  const late = new Promise<Error>((resolve) => abandoned.attach({ data: () => true, end: () => {}, error: resolve }))
  t.match((await late).message, /abandoned/, 'an answer nobody reads is cut')
})
