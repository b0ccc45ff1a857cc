import t from 'tap'
import { readFile, watch } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createExecIssuer } from '../../../src/credentials/issuers/exec.js'
import { MAX_LIFETIME_MS } from '../../../src/credentials/issuers/token-value.js'
import type { ExecIssuerConfig } from '../../../src/config/schema.js'
import { credentialRequest, everythingSaidBy, issuerDeps, issuerFailure } from '../../fixtures/issuers/helpers.js'
import { until } from '../../helpers/until.js'

const HELPER = fileURLToPath(new URL('../../fixtures/issuers/token-helper.mjs', import.meta.url))
const CANARY = 'exec-canary-5b2d90aa'

const issuer = (t: Parameters<typeof issuerDeps>[0], args: string[], over: Partial<ExecIssuerConfig> = {}) =>
  createExecIssuer('helper', { type: 'exec', command: [process.execPath, HELPER, ...args], timeout: 10_000, env: {}, ...over }, issuerDeps(t))

t.test('expires_at (RFC 3339) and expires_in forms', async (t) => {
  const at = await issuer(t, ['expires_at']).fetch(credentialRequest())
  t.equal(at.token.reveal(), CANARY)
  t.equal(at.id, at.token.fingerprint())
  t.ok(at.expiresAt! > at.issuedAt, 'expires_at read')

  const offset = new Date(Date.now() + 3_600_000)
  const withOffset = await issuer(t, ['expires_at_offset', offset.toISOString().replace('Z', '+00:00')]).fetch(credentialRequest())
  t.equal(withOffset.expiresAt, offset.getTime())

  const inForm = await issuer(t, ['expires_in', '45']).fetch(credentialRequest())
  t.equal(inForm.expiresAt! - inForm.issuedAt, 45_000)

  const capped = await issuer(t, ['expires_in', '1e9']).fetch(credentialRequest())
  t.equal(capped.expiresAt! - capped.issuedAt, MAX_LIFETIME_MS)

  const none = await issuer(t, ['no_expiry']).fetch(credentialRequest())
  t.equal(none.expiresAt, undefined, 'an opaque token without an expiry does not expire')
})

t.test('the environment is PATH, HOME, the request and env: nothing else of ours', async (t) => {
  process.env.SIDEKEY_TEST_PARENT_SECRET = 'must-not-be-inherited'
  t.teardown(() => { delete process.env.SIDEKEY_TEST_PARENT_SECRET })
  const dir = t.testdir({})
  const file = join(dir, 'env.json')
  await issuer(t, ['env', file], { env: { EXTRA: 'yes' } })
    .fetch(credentialRequest({ tool: 'crm', scopes: ['a', 'b'], audience: 'https://crm.test' }))
  const env = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>
  t.equal(env.SIDEKEY_TEST_PARENT_SECRET, undefined)
  t.match(env, { SIDEKEY_TOOL: 'crm', SIDEKEY_SCOPES: 'a b', SIDEKEY_AUDIENCE: 'https://crm.test', SIDEKEY_INSTANCE_ID: 'agent-7', EXTRA: 'yes' })
  t.equal(env.PATH, process.env.PATH)
})

t.test('failures: the message never includes stdout or stderr', async (t) => {
  const cases: Array<[string[], string, RegExp]> = [
    [['exit'], 'SIDEKEY_ISSUER_FAILED', /exited with code 3 \(stderr: \d+ bytes, not quoted\)$/],
    [['exit_leaky'], 'SIDEKEY_ISSUER_FAILED', /exited with code 1 \(stderr: \d+ bytes, not quoted\)$/],
    [['exit_stderr_only'], 'SIDEKEY_ISSUER_FAILED', /exited with code 3 \(stderr: \d+ bytes, not quoted\)$/],
    [['bad_json'], 'SIDEKEY_ISSUER_RESPONSE', /printed output that is not JSON$/],
    [['json_array'], 'SIDEKEY_ISSUER_RESPONSE', /not an object/],
    [['huge'], 'SIDEKEY_ISSUER_RESPONSE', /printed more than 65536 bytes/],
    [['expires_in', '-1'], 'SIDEKEY_ISSUER_RESPONSE', /expires_in that is not a positive number/],
    [['expires_at_offset', 'tomorrow'], 'SIDEKEY_ISSUER_RESPONSE', /not an RFC 3339 time/],
    [['expires_at_offset', '2001-01-01T00:00:00Z'], 'SIDEKEY_ISSUER_RESPONSE', /already expired/],
  ]
  for (const [args, code, why] of cases) {
    const err = await issuerFailure(issuer(t, args).fetch(credentialRequest()))
    t.equal(err.code, code, args.join(' '))
    t.match(err.message, why, args.join(' '))
    t.match(err.message, /^command node /)
    const said = everythingSaidBy(err)
    t.notMatch(said, CANARY.slice(0, 8), 'no part of the token')
  }
})

t.test('a command that cannot be started', async (t) => {
  const err = await issuerFailure(createExecIssuer('helper', { type: 'exec', command: [join(t.testdir({}), 'no-such-helper')], timeout: 10_000, env: {} }, issuerDeps(t)).fetch(credentialRequest()))
  t.equal(err.code, 'SIDEKEY_ISSUER_FAILED')
  t.match(err.message, 'command no-such-helper could not be started (ENOENT)')
})

/** Resolves with the content of `dir/name` once it is non-empty; the watch starts before this returns. */
function untilWritten (dir: string, name: string, signal: AbortSignal): Promise<string> {
  const events = watch(dir, { signal })[Symbol.asyncIterator]()
  const first = events.next()
  return (async () => {
    for (let event = await first; event.done !== true; event = await events.next()) {
      const text = await readFile(join(dir, name), 'utf8').catch(() => '')
      if (text !== '') return text
    }
    throw new Error(`${name} was never written`)
  })()
}

/** True once `pid` is gone or a zombie (Linux /proc); bounded wait, since reaping is up to init. */
async function gone (pid: number): Promise<boolean> {
  const exited = async (): Promise<boolean> => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
    return stat === undefined || /^\d+ \(.*\) Z/.test(stat)
  }
  return await until(exited, `pid ${pid} to exit`, 2_000).then(() => true, () => false)
}

t.test('timeout kills a command that does not finish', async (t) => {
  const err = await issuerFailure(issuer(t, ['hang', join(t.testdir({}), 'pid')], { timeout: 300 }).fetch(credentialRequest()))
  t.equal(err.code, 'SIDEKEY_ISSUER_TIMEOUT')
  t.match(err.message, 'timed out after 300 ms and was killed')
})

t.test('abort kills the whole process group with SIGKILL', async (t) => {
  const dir = t.testdir({})
  const pidFile = join(dir, 'grandchild.pid')
  const ac = new AbortController()
  // Abort once the helper is provably running: it wrote its grandchild's pid (watched before it can happen).
  const stopWatching = new AbortController()
  t.teardown(() => stopWatching.abort())
  const written = untilWritten(dir, 'grandchild.pid', stopWatching.signal)
  const pending = issuer(t, ['hang', pidFile]).fetch(credentialRequest({ signal: ac.signal }))
  const grandchild = Number(await written)
  ac.abort()
  const err = await issuerFailure(pending)
  t.equal(err.code, 'SIDEKEY_ISSUER_TIMEOUT')
  t.match(err.message, 'killed: the fetch was aborted')
  if (process.platform === 'linux') {
    t.ok(grandchild > 0 && await gone(grandchild), 'the grandchild was killed with its parent')
  }

  const already = await issuerFailure(issuer(t, ['no_expiry']).fetch(credentialRequest({ signal: ac.signal })))
  t.match(already.message, 'was not started')
})
