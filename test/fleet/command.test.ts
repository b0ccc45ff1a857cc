import t from 'tap'
import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CompactSign } from 'jose'
import { signCommand, verifyCommand, MAX_COMMAND_LIFETIME_S, type CommandInput, type VerifiedCommand } from '../../src/fleet/command.js'
import { loadOperatorKeys, loadOperatorPrivateKey, parseOperatorKeys } from '../../src/fleet/keys.js'
import { LockTable } from '../../src/fleet/locks.js'
import { ReplayCache } from '../../src/fleet/replay.js'
import { keyToken, KEYS } from '../../src/fleet/bucket.js'
import { operatorKey } from '../helpers/fleet.js'

const lock: CommandInput = { action: 'lock', tool: 'github', instance: '*', actor: 'alice', reason: 'leak' }
const NOW = Date.UTC(2026, 0, 1, 12)

t.test('ES256 and EdDSA commands verify against a JWKS; PEM public keys and PKCS#8 private keys load', async (t) => {
  for (const alg of ['ES256', 'EdDSA'] as const) {
    const op = await operatorKey(alg)
    const keys = await loadOperatorKeys(op.jwksFile)
    const fromPem = await loadOperatorPrivateKey(op.pemFile)
    t.equal(fromPem.kid, op.key.kid, `${alg}: --key computes the kid the JWKS carries`)
    const { jws, claims } = await signCommand(lock, fromPem, NOW)
    t.equal(claims.exp - claims.iat, MAX_COMMAND_LIFETIME_S)
    const v = await verifyCommand(jws, keys, NOW, NOW)
    t.ok(v.ok, `${alg} verifies`)
    t.match(v, { command: { action: 'lock', tool: 'github', instance: '*', actor: 'alice', kid: op.key.kid, storedAt: NOW } })
    // The same key as a PEM public key file.
    const pemPub = join(op.dir, 'pub.pem')
    writeFileSync(pemPub, createPublicKey(op.key.key).export({ type: 'spki', format: 'pem' }))
    t.ok((await verifyCommand(jws, await loadOperatorKeys(pemPub), NOW, NOW)).ok, `${alg}: a PEM public key works as operator_keys`)
  }
})

t.test('freshness is judged at the time the broker stored the command', async (t) => {
  const op = await operatorKey()
  const keys = await loadOperatorKeys(op.jwksFile)
  const { jws } = await signCommand(lock, op.key, NOW)
  t.ok((await verifyCommand(jws, keys, NOW + 1000, NOW + 3600_000)).ok, 'stored fresh, read an hour later: a sidecar catching up applies it')
  t.match(await verifyCommand(jws, keys, NOW + 3600_000, NOW + 3600_000), { ok: false, reason: 'expired' }, 'stored again after exp: a replay')
  t.match(await verifyCommand(jws, keys, NOW - 120_000, NOW), { ok: false, reason: 'not_yet_valid' })
  const short = await signCommand({ ...lock, ttlSeconds: 60 }, op.key, NOW)
  t.match(await verifyCommand(short.jws, keys, NOW + 120_000, NOW + 120_000), { ok: false, reason: 'expired' })
})

t.test('every malformed shape is refused with a reason, unverified claims kept for the audit', async (t) => {
  const op = await operatorKey()
  const keys = await loadOperatorKeys(op.jwksFile)
  const sign = (payload: unknown, header: Record<string, unknown> = { alg: 'ES256', kid: op.key.kid }): Promise<string> =>
    new CompactSign(new TextEncoder().encode(typeof payload === 'string' ? payload : JSON.stringify(payload))).setProtectedHeader(header as { alg: string }).sign(op.key.key)
  const iat = NOW / 1000
  const good = { ...lock, jti: 'abcdefgh1234', iat, exp: iat + 60 }
  t.match(await verifyCommand('x'.repeat(9000), keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand('a.b', keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand('e30.e30.e30', keys, NOW, NOW), { ok: false, reason: 'unsupported_alg' })
  t.match(await verifyCommand('bm90anNvbg.e30.e30', keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand(await sign(good, { alg: 'ES256' }), keys, NOW, NOW), { ok: false, reason: 'unknown_key', claims: { tool: 'github', jti: 'abcdefgh1234' } })
  t.match(await verifyCommand(await sign('not json'), keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand(await sign({ ...good, action: 'delete' }), keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand(await sign({ ...good, extra: 1 }), keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand(await sign({ ...good, tool: 'a b' }), keys, NOW, NOW), { ok: false, reason: 'malformed' })
  t.match(await verifyCommand(await sign({ ...good, exp: iat }), keys, NOW, NOW), { ok: false, reason: 'lifetime_too_long' })
  const ed = await operatorKey('EdDSA')
  const edJws = (await signCommand(lock, ed.key, NOW)).jws
  t.match(await verifyCommand(edJws.replace(/^[^.]+/, Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: op.key.kid })).toString('base64url')), keys, NOW, NOW),
    { ok: false, reason: 'bad_signature' }, 'an alg that does not match the key named')
  const tampered = (await signCommand(lock, op.key, NOW)).jws.replace(/\.([^.]+)\./, (_m, p: string) => `.${Buffer.from(Buffer.from(p, 'base64url').toString().replace('alice', 'mallo')).toString('base64url')}.`)
  t.match(await verifyCommand(tampered, keys, NOW, NOW), { ok: false, reason: 'bad_signature', claims: { actor: 'mallo' } })
})

t.test('operator_keys files that cannot be used are refused by name', async (t) => {
  const op = await operatorKey()
  const file = (name: string, text: string): string => {
    const p = join(op.dir, name)
    writeFileSync(p, text)
    return p
  }
  await t.rejects(loadOperatorKeys(join(op.dir, 'absent')), { code: 'SIDEKEY_CONFIG_INVALID', message: /cannot be read \(ENOENT\)/ })
  await t.rejects(loadOperatorKeys(file('junk', 'junk')), { message: /neither a JWKS/ })
  await t.rejects(loadOperatorKeys(file('empty.jwks', '{"keys":[]}')), { message: /holds no keys/ })
  await t.rejects(loadOperatorKeys(file('bad.pem', '-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n')), { message: /not a PEM public key/ })
  await t.rejects(loadOperatorKeys(file('priv.jwks', JSON.stringify({ keys: [{ kty: 'EC', d: 'x' }] }))), { message: /not a public JWK/ })
  await t.rejects(loadOperatorKeys(file('weird.jwks', JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] }))), { message: /not a usable JWK/ })
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  await t.rejects(parseOperatorKeys(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'rsa.pem'), { message: /EC P-256 \(ES256\) or Ed25519/ })
  await t.rejects(loadOperatorPrivateKey(join(op.dir, 'absent')), { message: /--key .* cannot be read/ })
  await t.rejects(loadOperatorPrivateKey(op.jwksFile), { message: /not a PEM private key/ })
})

t.test('lock table: latest signed iat wins per tool; * locks all, unlock * lifts earlier locks', async (t) => {
  const c = (action: 'lock' | 'unlock', tool: string, iat: number): VerifiedCommand =>
    ({ action, tool, instance: '*', actor: 'a', reason: 'r', jti: `j${action}${tool}${iat}`, iat, exp: iat + 60, kid: 'k', jws: 'x', storedAt: iat * 1000 })
  const locks = new LockTable()
  t.equal(locks.lockOf('api'), undefined)
  t.ok(locks.apply(c('lock', 'api', 10)))
  t.match(locks.lockOf('api'), { tool: 'api', actor: 'a', reason: 'r', at: new Date(10_000).toISOString() })
  t.notOk(locks.apply(c('unlock', 'api', 5)), 'an older unlock (reordered in the bucket) does not lift a newer lock')
  t.ok(locks.lockOf('api'))
  t.ok(locks.apply(c('lock', '*', 20)))
  t.match(locks.lockOf('other'), { tool: '*' }, 'the instance kill switch locks every tool')
  t.ok(locks.apply(c('unlock', 'api', 25)))
  t.ok(locks.lockOf('api'), 'unlocking one tool leaves the instance lock')
  t.ok(locks.apply(c('unlock', '*', 30)))
  t.equal(locks.lockOf('api'), undefined)
  t.ok(locks.apply(c('lock', 'api', 29)))
  t.equal(locks.lockOf('api'), undefined, 'a lock older than unlock * stays lifted')
  t.ok(locks.apply(c('lock', 'api', 31)))
  t.same(locks.active().map((l) => l.tool), ['api'])
  t.equal(locks.commands().length, 2)
})

t.test('replay cache: duplicate delivery vs replay, bounded', async (t) => {
  const cache = new ReplayCache(3)
  t.equal(cache.add('a', 1, 1000, 0), 'new')
  t.equal(cache.add('a', 1, 1000, 10), 'duplicate')
  t.equal(cache.add('a', 2, 1000, 10), 'replayed')
  t.equal(cache.add('a', 2, 2000, 1001), 'new', 'forgotten once it could no longer verify')
  cache.add('b', 3, 50, 10)
  cache.add('c', 4, 5000, 10)
  t.equal(cache.add('d', 5, 5000, 100), 'new', 'full: the expired entry (b) goes first')
  t.equal(cache.size, 3)
  t.equal(cache.add('e', 6, 5000, 100), 'new', 'still full: the closest to expiry goes')
  t.equal(cache.size, 3)
})

t.test('bucket keys hold any instance id as one token', async (t) => {
  t.equal(keyToken('agent-7'), 'agent-7')
  t.equal(keyToken('pod.ns.svc'), 'pod=2Ens=2Esvc')
  t.equal(keyToken('é'), '=C3=A9')
  t.equal(KEYS.ack('j1', 'a.b'), 'ack.j1.a=2Eb')
})
