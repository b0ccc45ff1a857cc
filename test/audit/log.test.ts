import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { auditPath, createLogger, escapeAllControl, flushLogger, pathWithoutQuery, redactQuery } from '../../src/audit/log.js'
import { Secret } from '../../src/util/secret.js'
import { memoryLogger } from './helpers.js'

t.test('a line is short JSON: ISO time, msg, no pid or hostname; the chain seal last', async (t) => {
  const { logger, records } = memoryLogger()
  logger.info({ proxy: '127.0.0.1:4750' }, 'listening')
  const [rec] = records()
  t.same(Object.keys(rec!), ['level', 'time', 'proxy', 'msg', 'run_id', 'seq', 'chain'])
  t.equal(rec!.seq, 1)
  t.equal(rec!.msg, 'listening')
  t.match(rec!.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  const { logger: plain, records: plainRecords } = memoryLogger('info', { chain: false })
  plain.info({ proxy: '127.0.0.1:4750' }, 'listening')
  t.same(Object.keys(plainRecords()[0]!).sort(), ['level', 'msg', 'proxy', 'time'], 'chain: false writes the line unsealed')
})

t.test('control characters in logged strings cannot forge lines or drive a terminal', async (t) => {
  const { logger, text, records } = memoryLogger()
  const nasty = 'a\r\n{"event":"forged"}\u001b[31mred\u0007\u0000\u007f\u009b2J\u2028\u2029\u202eevil'
  logger.info({ event: 'credential.used', host: nasty, path: `/x${nasty}`, nested: { header: nasty }, list: [nasty] }, nasty)
  const out = text()
  t.equal(out.split('\n').length, 2, 'one line, one terminating newline')
  // No raw control or bidi character reaches the output.
  t.notMatch(out.slice(0, -1), /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/)
  const rec = records()[0]!
  t.equal(rec.event, 'credential.used', 'the forged field stays inside a string')
  t.match(rec.host, /^a\r\n\{"event":"forged"\}\u001b\[31mred\u0007\u0000\\u007f\\u009b2J\\u2028\\u2029\\u202eevil$/,
    'C0 is JSON-escaped, DEL/C1/separators/bidi become visible \\uXXXX')
  t.match(rec.msg, /\\u009b/)
  t.match((rec.nested as Record<string, string>).header, /\\u202e/)
  t.match((rec.list as string[])[0], /\\u007f/)
})

t.test('fields that carry credentials are redacted wherever they sit', async (t) => {
  const canary = 'sk-canary-0123456789abcdefCANARY'
  const { logger, text } = memoryLogger()
  logger.info({
    authorization: `Bearer ${canary}`,
    token: canary,
    client_secret: canary,
    access_token: canary,
    headers: { authorization: canary, 'x-api-key': canary, cookie: canary },
    req: { headers: { authorization: canary } },
    secret: new Secret(canary),
    wrapped: { value: new Secret(canary) },
    url: `https://api.test/v1?access_token=${canary}&q=1`,
    path: `/v1?api_key=${encodeURIComponent(canary)}`,
  }, 'request')
  const out = text()
  t.notOk(out.includes(canary), 'canary absent')
  t.notOk(out.includes(encodeURIComponent(canary)), 'url-encoded canary absent')
  t.notOk(out.includes(Buffer.from(canary).toString('base64')), 'base64 canary absent')
  t.match(out, /"url":"https:\/\/api.test\/v1\?access_token=\[REDACTED\]&q=1"/, 'the rest of the URL stays readable')
})

t.test('redactQuery redacts credential parameters only, whatever their case or encoding', async (t) => {
  t.equal(redactQuery('/v1/x?key=abc&q=1#frag'), '/v1/x?key=[REDACTED]&q=1#frag')
  t.equal(redactQuery('https://h/p?Access_Token=a&TOKEN=b&api%5Fkey=c&apikey=d&code=e&client_secret=f&password=g&sig=h&signature=i&page=2'),
    'https://h/p?Access_Token=[REDACTED]&TOKEN=[REDACTED]&api%5Fkey=[REDACTED]&apikey=[REDACTED]&code=[REDACTED]&client_secret=[REDACTED]&password=[REDACTED]&sig=[REDACTED]&signature=[REDACTED]&page=2')
  t.equal(redactQuery('/p?q=1&flag&token='), '/p?q=1&flag&token=', 'empty values and bare flags untouched')
  t.equal(redactQuery('/no-query'), '/no-query')
  t.equal(redactQuery('/p?%ZZ=1'), '/p?%ZZ=1', 'malformed encodings do not throw')
})

t.test('the audit path never carries a query, fragment or a credential-shaped segment', async (t) => {
  t.equal(pathWithoutQuery('/v1/chat?key=abc'), '/v1/chat')
  t.equal(pathWithoutQuery('/v1/chat#x?y'), '/v1/chat')
  t.equal(pathWithoutQuery('/v1/chat'), '/v1/chat')
  t.equal(auditPath('/bot123456789:AAEhBP0av28nQ3yT2BqR4v8Qk1bqzT9ew9E/sendMessage?chat=1'), '/<redacted:telegram_bot>/sendMessage')
  t.equal(auditPath('/keys/ghp_0123456789abcdefghijABCDEFGHIJ012345/x'), '/keys/<redacted:ghp_>/x')
  t.equal(auditPath('/repos/acme/app/issues/42'), '/repos/acme/app/issues/42', 'ordinary paths kept as they are')
})

t.test('escapeAllControl makes text safe for a terminal', async (t) => {
  t.equal(escapeAllControl('a\nb\u001b[2J\u009b'), 'a\\u000ab\\u001b[2J\\u009b')
})

t.test('stdout through an async destination by default; flushLogger drains it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-log-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'out.log')
  const destination = pino.destination({ dest: file, sync: false, mkdir: true })
  await new Promise((resolve) => destination.once('ready', resolve))
  const logger = createLogger({ level: 'info', destination })
  for (let i = 0; i < 100; i++) logger.info({ i }, 'line')
  await flushLogger(logger)
  const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean)
  t.equal(lines.length, 100)
  destination.end()
  // With no destination, a sync stdout logger can be built and flushed without error.
  await flushLogger(createLogger({ level: 'silent', sync: true }))
})

t.test('the level filters', async (t) => {
  const { logger, lines } = memoryLogger('warn')
  logger.info('quiet')
  logger.warn('loud')
  t.equal(lines().length, 1)
})
