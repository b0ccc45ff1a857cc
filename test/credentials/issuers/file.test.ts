import t from 'tap'
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { createFileIssuer } from '../../../src/credentials/issuers/file.js'
import type { FileIssuerConfig } from '../../../src/config/schema.js'
import type { Issuer } from '../../../src/credentials/issuer.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'

const fileIssuer = (t: Parameters<typeof issuerDeps>[0], path: string, over: Partial<FileIssuerConfig> = {}): Issuer => {
  const issuer = createFileIssuer('mounted', { type: 'file', path, ...over }, issuerDeps(t))
  t.teardown(() => issuer.close?.())
  return issuer
}

/**
 * Resolves at the issuer's next change notification. The issuer's watch does not hold the event loop open (a
 * sidecar's servers do that), so the wait holds it with a timer that never fires.
 */
const nextChange = (issuer: Issuer, onEach: () => void = () => {}): Promise<void> => {
  const keepAlive = setInterval(() => {}, 1 << 30)
  return new Promise<void>((resolve) => issuer.onChange!(() => { onEach(); resolve() }))
    .finally(() => clearInterval(keepAlive))
}

const jwt = (exp: number, jti?: string) => {
  const b = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp)
  return (jti === undefined ? b : b.setJti(jti)).sign(new Uint8Array(32))
}

t.test('a plain secret: trailing newline dropped, no expiry, id = fingerprint', async (t) => {
  const dir = t.testdir({ key: 'sk-live-1234\r\n' })
  const cred = await fileIssuer(t, join(dir, 'key')).fetch(credentialRequest())
  t.equal(cred.token.reveal(), 'sk-live-1234')
  t.equal(cred.expiresAt, undefined)
  t.equal(cred.id, cred.token.fingerprint())
})

t.test('json_field takes that field of a JSON file', async (t) => {
  const dir = t.testdir({
    'creds.json': JSON.stringify({ api_key: 'field-secret-77', other: 'x' }),
    'no-field.json': JSON.stringify({ other: 'field-canary-1' }),
    'not-json': 'field-canary-2',
    'number.json': JSON.stringify({ api_key: 42 }),
  })
  const cred = await fileIssuer(t, join(dir, 'creds.json'), { json_field: 'api_key' }).fetch(credentialRequest())
  t.equal(cred.token.reveal(), 'field-secret-77')
  for (const [name, why] of [['no-field.json', /has no field "api_key"/], ['not-json', /is not JSON/], ['number.json', /holds no token/]] as const) {
    const err = await issuerFailure(fileIssuer(t, join(dir, name), { json_field: 'api_key' }).fetch(credentialRequest()))
    t.equal(err.code, 'SIDEKEY_ISSUER_RESPONSE', name)
    t.match(err.message, why, name)
    t.notMatch(everythingSaidBy(err), 'field-canary', name)
  }
})

t.test('a JWT: expiry from exp, id from jti; an expired JWT is a failure', async (t) => {
  const exp = Math.floor(Date.now() / 1000) + 600
  const dir = t.testdir({ token: `${await jwt(exp, 'jti-file-1')}\n`, old: await jwt(Math.floor(Date.now() / 1000) - 5) })
  const cred = await fileIssuer(t, join(dir, 'token')).fetch(credentialRequest())
  t.equal(cred.expiresAt, exp * 1000)
  t.equal(cred.id, 'jti-file-1')
  const err = await issuerFailure(fileIssuer(t, join(dir, 'old')).fetch(credentialRequest()))
  t.match(err.message, 'already expired')
})

t.test('an empty or missing file is a failure', async (t) => {
  const dir = t.testdir({ empty: '\n' })
  const empty = await issuerFailure(fileIssuer(t, join(dir, 'empty')).fetch(credentialRequest()))
  t.equal(empty.code, 'SIDEKEY_ISSUER_FAILED')
  t.match(empty.message, 'is empty')
  const missing = await issuerFailure(fileIssuer(t, join(dir, 'missing')).fetch(credentialRequest()))
  t.match(missing.message, 'ENOENT')
})

t.test('an atomic rename over the file is seen: onChange fires and fetch reads the new content', async (t) => {
  const dir = t.testdir({ key: 'version-1' })
  const issuer = fileIssuer(t, join(dir, 'key'))
  t.equal((await issuer.fetch(credentialRequest())).token.reveal(), 'version-1')
  const changed = nextChange(issuer)
  await writeFile(join(dir, '.key.tmp'), 'version-2\n')
  await rename(join(dir, '.key.tmp'), join(dir, 'key'))
  await changed
  t.equal((await issuer.fetch(credentialRequest())).token.reveal(), 'version-2')
})

t.test('a Kubernetes ..data symlink swap is seen', async (t) => {
  // The layout the kubelet's AtomicWriter makes: key -> ..data/key, ..data -> ..<timestamp>/
  const dir = t.testdir({ '..2024_01_01': { key: 'projected-1' } })
  await symlink('..2024_01_01', join(dir, '..data'))
  await symlink(join('..data', 'key'), join(dir, 'key'))
  const issuer = fileIssuer(t, join(dir, 'key'))
  t.equal((await issuer.fetch(credentialRequest())).token.reveal(), 'projected-1')

  const changed = nextChange(issuer)
  await mkdir(join(dir, '..2024_01_02'))
  await writeFile(join(dir, '..2024_01_02', 'key'), 'projected-2')
  await symlink('..2024_01_02', join(dir, '..data_tmp'))
  await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  await changed
  t.equal((await issuer.fetch(credentialRequest())).token.reveal(), 'projected-2')
})

t.test('every holder hears of a change, even after a fetch already read it', async (t) => {
  const dir = t.testdir({ key: 'before' })
  const issuer = fileIssuer(t, join(dir, 'key'))
  await issuer.fetch(credentialRequest())
  let calls = 0
  const changed = nextChange(issuer, () => { calls++ })
  await writeFile(join(dir, 'key'), 'after')
  t.equal((await issuer.fetch(credentialRequest())).token.reveal(), 'after', 'read at once, before the watcher')
  await changed
  t.equal(calls, 1)
})
