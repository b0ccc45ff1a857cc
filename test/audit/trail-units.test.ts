import t from 'tap'
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { generateKeyPairSync } from 'node:crypto'
import { request } from 'undici'
import { AdminServer } from '../../src/admin/server.js'
import { auditChainOf } from '../../src/audit/log.js'
import { AuditTrail } from '../../src/audit/trail/trail.js'
import { AUDIT_CHECKPOINT_FILE, AUDIT_KEY_FILE, loadOrCreateAuditKey, publicJwk, readLastCheckpoint, signCheckpoint, verifyCheckpoint } from '../../src/audit/trail/key.js'
import { formatVerifyResult } from '../../src/reports/verify/format.js'
import { TrailVerifier, verifyTrail } from '../../src/reports/verify/verify.js'
import { readLineBytes } from '../../src/reports/verify/read.js'
import { chainDigest } from '../../src/audit/trail/chain.js'
import { ManualClock, memoryLogger } from './helpers.js'

/** The trail's parts without a proxy: the key on disk, checkpoints by count and by time, and the verifier's corners. */

const dir = (): string => mkdtempSync(join(tmpdir(), 'sidekey-trail-unit-'))

/** A trail of `n` lines (plus audit.started and checkpoints) written through a real chained logger. */
async function trail (n: number, opts: { dir?: string, events?: number, clock?: ManualClock } = {}): Promise<{ lines: string[], trail: AuditTrail }> {
  const mem = memoryLogger()
  const chain = auditChainOf(mem.logger)!
  const tr = await AuditTrail.open({ logger: mem.logger, chain, dir: opts.dir ?? dir(), instanceId: 'unit', every: { events: opts.events ?? 10, interval: 60_000 }, clock: opts.clock ?? new ManualClock() })
  for (let i = 0; i < n; i++) {
    mem.logger.info({ event: 'credential.used', i })
    if (i % 5 === 4) await new Promise((resolve) => setImmediate(resolve))
  }
  await tr.close()
  return { lines: mem.lines(), trail: tr }
}

t.test('checkpoints by count and by time; the listener hook; the last one kept on disk', async (t) => {
  const clock = new ManualClock()
  const mem = memoryLogger()
  const d = dir()
  const tr = await AuditTrail.open({ logger: mem.logger, chain: auditChainOf(mem.logger)!, dir: d, instanceId: 'unit', every: { events: 1000, interval: 60_000 }, clock })
  const heard: number[] = []
  const stop = tr.onCheckpoint((cp) => { heard.push(cp.seq) })
  tr.onCheckpoint(() => { throw new Error('a failing listener is its own problem') })
  clock.advance(60_000)
  t.equal(mem.records().filter((r) => r.event === 'audit.checkpoint').length, 1, 'the interval checkpoint covers audit.started')
  clock.advance(60_000)
  t.equal(mem.records().filter((r) => r.event === 'audit.checkpoint').length, 1, 'nothing written since: no checkpoint')
  mem.logger.info('one line')
  clock.advance(60_000)
  t.same(heard, [1, 3])
  // A reload's new spacing: two lines now make a checkpoint.
  tr.setEvery({ events: 2, interval: 60_000 })
  mem.logger.info('a')
  mem.logger.info('b')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(heard, [1, 3, 6])
  stop()
  await tr.close()
  tr.setEvery({ events: 1, interval: 1000 })
  await tr.close()
  t.same(heard, [1, 3, 6], 'removed listener not called')
  const last = mem.records().at(-1)!
  t.match(last, { event: 'audit.checkpoint', checkpoint: { final: true } })
  t.equal(tr.checkpoint(false), undefined, 'closed')
  const kept = await readLastCheckpoint(d)
  t.match(kept, { run_id: last.run_id, seq: (last.seq as number) - 1, final: true })
  t.same(tr.jwks.keys, [mem.records()[0]!.key])
  const r = await verifyTrail(mem.lines())
  t.ok(r.consistent, formatVerifyResult(r))
})

t.test('GET /audit-key: the JWKS, or 404 when the log is not chained', async (t) => {
  const { publicKey } = generateKeyPairSync('ed25519')
  const jwks = { keys: [publicJwk(publicKey)] }
  for (const [keys, status] of [[jwks, 200], [undefined, 404]] as const) {
    const admin = new AdminServer({ credentials: () => { throw new Error('unused') }, metrics: async () => ({ contentType: '', body: '' }), caPem: () => '', reload: async () => {}, tokenDigest: () => undefined, audit: { emit: () => {} }, auditKeys: () => keys })
    const { port } = await admin.listen('127.0.0.1', 0)
    const res = await request(`http://127.0.0.1:${port}/audit-key`)
    t.equal(res.statusCode, status)
    if (status === 200) t.same(await res.body.json(), jwks)
    else await res.body.dump()
    await admin.close()
  }
})

t.test('the audit key: made once 0600, reused, refused when others can read it or it is not Ed25519', async (t) => {
  const d = dir()
  const k1 = await loadOrCreateAuditKey(d)
  const k2 = await loadOrCreateAuditKey(d)
  t.same(k1.publicJwk, k2.publicJwk)
  t.match(k1.publicJwk, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })
  chmodSync(join(d, AUDIT_KEY_FILE), 0o644)
  await t.rejects(loadOrCreateAuditKey(d), { code: 'SIDEKEY_AUDIT_KEY', message: /accessible by group or others \(mode 0644\)/ })
  writeFileSync(join(d, AUDIT_KEY_FILE), 'not a key', { mode: 0o600 })
  chmodSync(join(d, AUDIT_KEY_FILE), 0o600)
  await t.rejects(loadOrCreateAuditKey(d), { message: /is not a PEM private key/ })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' })
  writeFileSync(join(d, AUDIT_KEY_FILE), ec)
  await t.rejects(loadOrCreateAuditKey(d), { message: /is not an Ed25519 key/ })
  const file = join(dir(), 'file')
  writeFileSync(file, '')
  await t.rejects(loadOrCreateAuditKey(join(file, 'sub')), { code: 'SIDEKEY_AUDIT_KEY' })
})

t.test('a checkpoint JWS is checked strictly', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const key = { privateKey, publicJwk: publicJwk(publicKey) }
  const claims = { iss: 'i', run_id: 'r', seq: 1, chain: 'c', final: false, iat: 1 }
  const jws = signCheckpoint(key, claims)
  t.match(verifyCheckpoint(jws, key.publicJwk), { ok: true, claims, kid: key.publicJwk.kid })
  t.match(verifyCheckpoint('a.b', key.publicJwk), { ok: false, why: 'not a compact JWS' })
  t.match(verifyCheckpoint('a.b.c', key.publicJwk), { ok: false, why: /not JSON/ })
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  t.match(verifyCheckpoint(`${b64({ alg: 'none' })}.${b64(claims)}.`, key.publicJwk), { ok: false, why: /not EdDSA/ })
  t.match(verifyCheckpoint(jws, { kty: 'OKP', crv: 'Ed25519', x: 5 }), { ok: false, why: /not a usable/ })
  const ecJwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' })
  t.match(verifyCheckpoint(jws, ecJwk), { ok: false })
  const [h, , s] = jws.split('.')
  t.match(verifyCheckpoint(`${h}.${b64({ ...claims, seq: 2 })}.${s}`, key.publicJwk), { ok: false, why: 'signature does not verify' })
  const bare = signCheckpoint(key, { iss: 'i' } as never)
  t.match(verifyCheckpoint(bare, key.publicJwk), { ok: false, why: /lack run_id/ })
})

t.test('a corrupt or foreign last checkpoint is not carried into audit.started', async (t) => {
  const d = dir()
  const first = await trail(3, { dir: d })
  t.ok((await readLastCheckpoint(d)) !== undefined)
  writeFileSync(join(d, AUDIT_CHECKPOINT_FILE), '{oops')
  t.equal(await readLastCheckpoint(d), undefined)
  const second = await trail(3, { dir: d })
  t.equal(JSON.parse(second.lines[0]!).previous, null)
  // A checkpoint another key signed (the key file was replaced since): not named either.
  const other = JSON.parse(first.lines.at(-1)!)
  writeFileSync(join(d, AUDIT_CHECKPOINT_FILE), JSON.stringify({ iss: 'unit', run_id: 'x', seq: 1, chain: 'c', final: true, iat: 1, jws: flip(other.jws as string) }))
  const third = await trail(1, { dir: d })
  t.equal(JSON.parse(third.lines[0]!).previous, null)
})

t.test('verifier corners: unknown format, no audit.started, copied checkpoint, a run missing between two, key changed', async (t) => {
  const d = dir()
  const r1 = (await trail(12, { dir: d })).lines
  const r2 = (await trail(12, { dir: d })).lines
  const r3 = (await trail(12, { dir: d })).lines
  const all = await verifyTrail([...r1, ...r2, ...r3])
  t.ok(all.consistent, formatVerifyResult(all))
  t.equal(all.run_details[2]!.previous?.run_id, JSON.parse(r2[0]!).run_id)
  // The middle run gone: the third names it.
  const gap = await verifyTrail([...r1, ...r3])
  t.match(gap.problems, [{ kind: 'removed', seq: 1, message: /previous run .* is missing/ }])
  // A future format.
  const future = [...r1]
  future[0] = reseal(future[0]!.replace('sidekey-audit/1', 'sidekey-audit/9'), '', 1)
  t.match((await verifyTrail(future)).problems, [{ kind: 'format', seq: 1 }])
  // The head gone: no key for the checkpoints.
  t.match((await verifyTrail(r1.slice(1))).problems, [{ kind: 'removed', seq: 1, message: /head is not in the input/ }])
  // A checkpoint of run 2 copied into run 1 in place of run 1's own.
  const cpAt = r1.findIndex((l) => l.includes('audit.checkpoint'))
  const copied = [...r1]
  const foreign = JSON.parse(r2.find((l) => l.includes('audit.checkpoint'))!)
  copied[cpAt] = reseal(r1[cpAt]!.replace(/"jws":"[^"]*"/, `"jws":"${foreign.jws as string}"`), JSON.parse(r1[cpAt - 1]!).chain, cpAt + 1)
  t.match((await verifyTrail(copied)).problems, [{ kind: 'inserted', seq: cpAt + 1, message: /copied here/ }])
  // A second audit.started in the run with another key.
  const twice = [...r1]
  const { publicKey } = generateKeyPairSync('ed25519')
  const started = r1[0]!.replace(/"key":\{[^}]*\}/, `"key":${JSON.stringify(publicJwk(publicKey))}`)
  twice[1] = reseal(started, JSON.parse(r1[0]!).chain, 2)
  t.match((await verifyTrail(twice.slice(0, 2))).problems, [{ kind: 'key', seq: 2 }])
  // An audit.started without a key, and a checkpoint without a JWS.
  const keyless = [reseal(r1[0]!.replace(/"key":\{[^}]*\}/, '"key":null'), '', 1)]
  t.match((await verifyTrail(keyless)).problems, [{ kind: 'key', seq: 1 }])
  const nojws = [...r1]
  nojws[cpAt] = reseal(r1[cpAt]!.replace(/"jws":"[^"]*"/, '"jws":null'), JSON.parse(r1[cpAt - 1]!).chain, cpAt + 1)
  t.match((await verifyTrail(nojws)).problems, [{ kind: 'signature', seq: cpAt + 1 }])
  // The previous checkpoint in audit.started forged.
  const forgedPrev = [...r2]
  forgedPrev[0] = reseal(r2[0]!.replace(/("previous":\{.*?"jws":")[^"]*"/, '$1x.y.z"'), '', 1)
  t.match((await verifyTrail(forgedPrev)).problems, [{ kind: 'signature', seq: 1, message: /previous run's checkpoint/ }])
  // A run with no checkpoint at all.
  t.match((await verifyTrail(r1.slice(0, 3))).problems, [{ kind: 'tail', seq: 1, message: /no checkpoint vouches/ }])
  // A seal whose chain was cut: the line is the run's, so this is where it breaks.
  const cutSeal = [...r1]
  cutSeal[4] = cutSeal[4]!.replace(/.."\}$/, '"}')
  t.match((await verifyTrail(cutSeal)).problems, [{ kind: 'altered', seq: 5, message: /ending is not as sidekey writes it/ }])
  const cutSealLater = [...r1.slice(0, 4), cutSeal[5]!.replace(/.."\}$/, '"}')]
  t.match((await verifyTrail(cutSealLater)).problems, [{ kind: 'removed', seq: 5 }])
})

t.test('lines split across chunks, over-long lines, gzip on stdin, a missing file', async (t) => {
  const { lines } = await trail(4)
  const text = Buffer.from(lines.join('\n') + '\n' + 'y'.repeat(3000) + '\n' + lines[0])
  const chunks = [text.subarray(0, 7), text.subarray(7, 200), text.subarray(200, 1401), text.subarray(1401, 2000), text.subarray(2000, 2400), text.subarray(2400)]
  const got: string[] = []
  for await (const l of readLineBytes(['-'], Readable.from(chunks), { maxLine: 1000 })) got.push(Buffer.from(l).toString())
  t.same(got.slice(0, lines.length), lines)
  t.equal(got[lines.length]!.length, 1001, 'an over-long line is cut to maxLine + 1')
  t.equal(got.at(-1), lines[0], 'a last line without a newline')
  const gz = gzipSync(text)
  const viaGz: string[] = []
  for await (const l of readLineBytes(['-'], Readable.from([gz.subarray(0, 10), gz.subarray(10)]))) viaGz.push(Buffer.from(l).toString())
  t.equal(viaGz.length, lines.length + 2)
  const failures: unknown[] = []
  for await (const l of readLineBytes([join(dir(), 'absent.log')], Readable.from([]), { onError: (f) => failures.push(f) })) t.fail(String(l))
  t.match(failures, [{ code: 'ENOENT', lines: 0 }])
  await t.rejects(async () => { for await (const l of readLineBytes([join(dir(), 'absent.log')], Readable.from([]))) t.fail(String(l)) }, { code: 'ENOENT' })
  for await (const l of readLineBytes(['-'], Readable.from([]))) t.fail(String(l))
  // Strings and bytes alike; a CR before the newline is not part of the line.
  const v = new TrailVerifier()
  for (const l of lines) v.line(Buffer.from(l + '\r'))
  t.ok(v.finish().consistent)
  t.match(readFileSync(new URL(import.meta.url), 'utf8'), /over-long/)
})

/** The JWS with one character of its signature changed (not the last: it may carry only padding bits). */
function flip (jws: string): string {
  const i = jws.length - 10
  return jws.slice(0, i) + (jws[i] === 'A' ? 'B' : 'A') + jws.slice(i + 1)
}

/** Re-seals an edited line as seq `seq` after `prev`, keeping its run_id. */
function reseal (line: string, prev: string, seq: number): string {
  const runId = (/"run_id":"([^"]*)"/.exec(line))![1]!
  const body = line.replace(/,"run_id":"[^"]*","seq":\d+,"chain":"[^"]*"\}$/, '') + `,"run_id":"${runId}","seq":${seq}`
  return body + `,"chain":"${chainDigest(prev, body + '}')}"}`
}
