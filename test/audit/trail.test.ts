import t, { type Test } from 'tap'
import { mkdtempSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { Readable, Writable } from 'node:stream'
import { generateKeyPairSync } from 'node:crypto'
import { request, ProxyAgent } from 'undici'
import { Sidekey } from '../../src/app.js'
import { parseConfig } from '../../src/config/load.js'
import { createLogger } from '../../src/audit/log.js'
import { publicJwk, type AuditKey, type AuditJwk } from '../../src/audit/trail/key.js'
import { formatVerifyResult } from '../../src/reports/verify/format.js'
import type { VerifyOptions, VerifyResult } from '../../src/reports/verify/types.js'
import { verifyTrail } from '../../src/reports/verify/verify.js'
import { verifyCommand } from '../../src/reports/verify/command.js'
import { auditCommand } from '../../src/reports/summary.js'
import { tasksCommand } from '../../src/reports/tasks.js'
import { scopesCommand } from '../../src/reports/scopes.js'
import { startUpstream } from '../helpers/upstream.js'
import { LogCapture } from '../helpers/sidekey.js'
import { rechain, reseal } from './trail-generator.js'
import { cli } from '../helpers/cli.js'

/**
 * The tamper-evident trail, end to end: real sidekey runs under concurrent load write the trail; `verify` passes it
 * untouched (across a restart, and with three instances' logs interleaved), and names the first bad seq of every
 * kind of tampering.
 */

const up = await startUpstream()
t.teardown(() => up.close())
const root = mkdtempSync(join(tmpdir(), 'sidekey-trail-'))

interface Run { app: Sidekey, lines: string[], jwks: { keys: AuditJwk[] } }

/** One sidekey run on `dir`, `requests` calls through it (20 at a time), then a clean stop: its log lines. */
const configFor = (instance: string, dir: string): ReturnType<typeof parseConfig> => parseConfig(`
instance_id: ${instance}
ca: { dir: ${dir} }
resolve: { api.tool.test: 127.0.0.1 }
audit: { checkpoint_every: { events: 25 } }
issuers: { local: { type: local_jwt } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port} }, issuer: local, plaintext: true, placeholder: sidekey }
`, 'trail.yaml', {})

async function run (instance: string, dir: string, requests: number): Promise<Run> {
  const config = configFor(instance, dir)
  const log = new LogCapture()
  const app = await Sidekey.start({ config, listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: createLogger({ level: 'info', destination: log }) })
  const jwks = await (await request(`http://${app.adminAddress}/audit-key`)).body.json() as { keys: AuditJwk[] }
  const agent = new ProxyAgent({ uri: `http://${app.proxyAddress}`, proxyTunnel: false })
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < requests) {
      const i = next++
      const res = await request(`http://api.tool.test:${up.port}/v1/items/${i}`, { dispatcher: agent, headers: { authorization: 'Bearer sidekey' } })
      await res.body.dump()
    }
  }
  await Promise.all(Array.from({ length: 20 }, worker))
  await agent.close()
  await app.close()
  return { app, lines: log.text.split('\n').filter((l) => l !== ''), jwks }
}

const verify = (lines: readonly string[], opts: VerifyOptions = {}): Promise<VerifyResult> => verifyTrail(lines, opts)
const parse = (l: string): Record<string, unknown> => JSON.parse(l) as Record<string, unknown>
const seqOf = (l: string): number => parse(l).seq as number

const dirA = join(root, 'a')
const a1 = await run('agent-a', dirA, 200)
// A restart on the same directory, and two more instances: all written before any test runs.
const a2 = await run('agent-a', dirA, 30)
const b = await run('agent-b', join(root, 'b'), 60)
const c = await run('agent-c', join(root, 'c'), 60)

t.test('every line is sealed: run_id, seq 1.., chain last; audit.started first, the final checkpoint last', async (t) => {
  const recs = a1.lines.map(parse)
  t.equal(recs[0]!.event, 'audit.started')
  t.match(recs[0], { instance_id: 'agent-a', format: 'sidekey-audit/1', key: { kty: 'OKP', crv: 'Ed25519' }, previous: null })
  t.same(recs.map((r) => r.seq), recs.map((_, i) => i + 1))
  t.ok(recs.every((r) => r.run_id === recs[0]!.run_id))
  t.ok(a1.lines.every((l) => /,"run_id":"[\w-]+","seq":\d+,"chain":"[\w-]{43}"\}$/.test(l)), 'the seal ends every line')
  const last = recs.at(-1)!
  t.match(last, { event: 'audit.checkpoint', checkpoint: { final: true, seq: (last.seq as number) - 1 } })
  t.ok(recs.filter((r) => r.event === 'audit.checkpoint').length >= 8, '200 uses at 25 lines per checkpoint')
  t.equal(recs.filter((r) => r.event === 'credential.used').length, 200)
  t.same(a1.jwks.keys[0], recs[0]!.key, 'GET /audit-key serves the key audit.started names')
  t.equal(statSync(join(dirA, 'audit-key.pem')).mode & 0o777, 0o600)
})

t.test('an untouched trail verifies: intact with its key, only consistent without', async (t) => {
  const r = await verify(a1.lines)
  t.match(r, { intact: false, consistent: true, authenticated: false }, formatVerifyResult(r))
  t.equal(r.runs, 1)
  t.equal(r.lines, a1.lines.length)
  t.match(formatVerifyResult(r), /^\d+ events in 1 run, \d+ checkpoints: consistent, not authenticated: pass --keys, --fleet or --from\n/)
  t.notMatch(formatVerifyResult(r), /intact/)
  const withKeys = await verify(a1.lines, { keys: a1.jwks.keys })
  t.match(withKeys, { intact: true, consistent: true, authenticated: true, trust: 'keys' }, formatVerifyResult(withKeys))
  t.match(formatVerifyResult(withKeys), /^\d+ events in 1 run, \d+ checkpoints, intact\n/)
})

/** Verifies `lines`, expects exactly one problem of `kind` at `seq`, and returns its message. */
async function expectProblem (t: Test, lines: readonly string[], kind: string, seq: number, opts: VerifyOptions = {}): Promise<string> {
  const r = await verify(lines, opts)
  t.notOk(r.intact, 'not intact')
  t.equal(r.problems.length, 1, formatVerifyResult(r))
  t.match(r.problems[0], { kind, seq, instance_id: 'agent-a' }, formatVerifyResult(r))
  return r.problems[0]!.message
}

const used = a1.lines.map((l, i) => [l, i] as const).filter(([l]) => l.includes('"event":"credential.used"')).map(([, i]) => i)
const mid = used[100]!

t.test('a deleted line is named by its seq', async (t) => {
  const lines = a1.lines.filter((_, i) => i !== mid)
  t.match(await expectProblem(t, lines, 'removed', seqOf(a1.lines[mid]!)), /missing/)
})

t.test('an edited byte is named by its seq', async (t) => {
  const lines = [...a1.lines]
  lines[mid] = lines[mid]!.replace('"status":200', '"status":201')
  t.not(lines[mid], a1.lines[mid])
  t.match(await expectProblem(t, lines, 'altered', seqOf(a1.lines[mid]!)), /altered/)
  // An edit inside the seal itself.
  const sealEdit = [...a1.lines]
  sealEdit[mid] = sealEdit[mid]!.replace(/"chain":"(.)/, (_m, c: string) => `"chain":"${c === 'A' ? 'B' : 'A'}`)
  await expectProblem(t, sealEdit, 'altered', seqOf(a1.lines[mid]!))
})

t.test('two swapped lines are named by the first seq out of place', async (t) => {
  const lines = [...a1.lines]
  ;[lines[mid], lines[mid + 1]] = [lines[mid + 1]!, lines[mid]!]
  t.match(await expectProblem(t, lines, 'reordered', seqOf(a1.lines[mid]!)), /reordered/)
})

t.test('a dropped tail is caught: after the last checkpoint, or cut exactly at a periodic one', async (t) => {
  const cut = a1.lines.slice(0, -5)
  const lastCp = cut.map(parse).findLast((r) => r.event === 'audit.checkpoint')!
  t.match(await expectProblem(t, cut, 'tail', (lastCp.seq as number) + 1), /cannot be vouched for/)
  const atCp = a1.lines.slice(0, (lastCp.seq as number))
  t.match(await expectProblem(t, atCp, 'tail', (lastCp.seq as number) + 1), /periodic checkpoint/)
  // Still being written (--live): the open run's pending lines are reported, not failed.
  const live = await verify(cut, { live: true, keys: a1.jwks.keys })
  t.ok(live.intact, formatVerifyResult(live))
  t.match(live.notes.join('\n'), /still open/)
})

t.test('a line inserted with a seq already used, and a line added after the shutdown checkpoint', async (t) => {
  const forged = [...a1.lines]
  const victim = parse(a1.lines[mid]!)
  forged.splice(mid + 3, 0, a1.lines[mid]!.replace('"status":200', '"status":500'))
  await expectProblem(t, forged, 'inserted', victim.seq as number)
  // Appended after the final checkpoint, with a correct chain: the run said it was done.
  const tail = parse(a1.lines.at(-1)!)
  const extra = reseal(a1.lines.at(-1)!.replace(/"event":"audit.checkpoint".*/, '"msg":"forged"}'), tail.run_id as string, (tail.seq as number) + 1, tail.chain as string)
  t.match(await expectProblem(t, [...a1.lines, extra], 'inserted', (tail.seq as number) + 1), /shutdown checkpoint/)
  // An exact copy re-sent by a collector is skipped and counted, not a failure.
  const dup = await verify([...a1.lines.slice(0, mid + 2), a1.lines[mid]!, ...a1.lines.slice(mid + 2)], { keys: a1.jwks.keys })
  t.ok(dup.intact)
  t.equal(dup.skipped.duplicates, 1)
})

const otherKey = generateKeyPairSync('ed25519')
const mallory: AuditKey = { privateKey: otherKey.privateKey, publicJwk: publicJwk(otherKey.publicKey) }

t.test('an edited line with the chain recomputed after it: the next checkpoint does not match', async (t) => {
  const lines = rechain(a1.lines, mid, (l) => l.replace('"status":200', '"status":201'))
  const prevCp = a1.lines.slice(0, mid).map(parse).findLast((r) => r.event === 'audit.checkpoint')!
  t.match(await expectProblem(t, lines, 'rewritten', (prevCp.seq as number) + 1), /chain recomputed/)
})

t.test('re-signed with another key: the signature fails; with the key swapped in audit.started too, --keys catches it', async (t) => {
  const firstCp = a1.lines.findIndex((l) => l.includes('"event":"audit.checkpoint"'))
  const resigned = rechain(a1.lines, firstCp, (l) => l, mallory)
  t.match(await expectProblem(t, resigned, 'signature', seqOf(a1.lines[firstCp]!)), /signature does not verify/)
  // The whole trail rewritten with Mallory's key: consistent in itself (trust on first use cannot tell) ...
  const rewritten = rechain(a1.lines, 0, (l) => l.includes('"event":"audit.started"') ? l.replace(JSON.stringify(a1.jwks.keys[0]), JSON.stringify(mallory.publicJwk)) : l, mallory)
  t.match(await verify(rewritten), { consistent: true, authenticated: false, intact: false }, 'self-consistent: only the real key can tell')
  // ... but not with the instance's real key.
  t.match(await expectProblem(t, rewritten, 'key', 1, { keys: a1.jwks.keys }), /instance agent-a: its audit key .* is not among --keys/)
})

/** The probe's rewrite: one call removed, every seq and chain after it recomputed, re-signed with a fresh key. */
const removedCall = a1.lines[mid]!
const forgedTrail = rechain(a1.lines.filter((_, i) => i !== mid), 0, (l) => l.includes('"event":"audit.started"') ? l.replace(JSON.stringify(a1.jwks.keys[0]), JSON.stringify(mallory.publicJwk)) : l, mallory)

t.test('the full rewrite with a fresh key: exit 3 without a key from outside, 1 with --keys or --from', async (t) => {
  t.equal(forgedTrail.length, a1.lines.length - 1)
  t.notOk(forgedTrail.some((l) => l.includes(JSON.parse(removedCall).request_id as string)), 'the call is gone')
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-verify-forged-'))
  const file = join(dir, 'forged.log')
  writeFileSync(file, forgedTrail.join('\n') + '\n')
  const bare = await verifyCli([file])
  t.equal(bare.code, 3, bare.stdout)
  t.match(bare.stdout, /^\d+ events in 1 run, \d+ checkpoints: consistent, not authenticated: pass --keys, --fleet or --from\n/)
  t.notMatch(bare.stdout, /intact/)
  const keyed = await verifyCli(['--keys', writeKeys(dir, a1.jwks), file])
  t.equal(keyed.code, 1, keyed.stdout)
  t.match(keyed.stdout, /NOT INTACT.*\n {2}run \S+ \(instance agent-a\) seq 1: key: instance agent-a: its audit key .* is not among --keys/)
  // --from: the key served by a running sidekey on the same directory (the key the trail was really signed with).
  const app = await Sidekey.start({ config: configFor('agent-a', dirA), listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: createLogger({ level: 'info', destination: new LogCapture() }) })
  t.teardown(() => app.close())
  const from = await verifyCli(['--from', `http://${app.adminAddress}`, file])
  t.equal(from.code, 1, from.stdout)
  t.match(from.stdout, /seq 1: key: instance agent-a: its audit key .* is not among --keys/)
  const real = join(dir, 'real.log')
  writeFileSync(real, a1.lines.join('\n') + '\n')
  const untouched = await verifyCli([`--from=http://${app.adminAddress}/audit-key`, real])
  t.equal(untouched.code, 0, untouched.stdout)
  t.match(untouched.stdout, /^\d+ events in 1 run, \d+ checkpoints, intact\n/)
  const refused = await verifyCli(['--from', `http://${app.adminAddress}/no-such-path`, real])
  t.equal(refused.code, 2)
  t.match(refused.stderr, /--from .*: answered 404/)
})

/** Five calls appended by whoever can write the log file: shaped like credential.used, without run_id/seq/chain. */
const fabricated = Array.from({ length: 5 }, (_, i) => JSON.stringify({ level: 30, time: new Date().toISOString(), instance_id: 'agent-a', event: 'credential.used', tool: 'fabricated', credential_id: 'x', method: 'GET', host: 'api.tool.test', path: `/v1/f/${i}`, status: 200, task: 'fabricated-task' }))

t.test('appended unsealed lines: verify fails naming each line; the reports leave them out and say how many', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-verify-unsealed-'))
  const file = join(dir, 'trail.log')
  writeFileSync(file, [...a1.lines, ...fabricated].join('\n') + '\n')
  const res = await verifyCli(['--keys', writeKeys(dir, a1.jwks), file])
  t.equal(res.code, 1, res.stdout)
  t.match(res.stdout, /^\d+ events in 1 run, \d+ checkpoints: NOT INTACT \(5 lines without a seal\)\n/)
  for (let i = 1; i <= 5; i++) t.match(res.stdout, `  line ${a1.lines.length + i} of ${file}: credential.used without a seal`)
  const summary = await inProcess(auditCommand, ['--json', file])
  t.equal(summary.code, 0)
  const s = JSON.parse(summary.stdout) as { unsealed: number, instances: Record<string, { tools: Record<string, { uses: number }> }> }
  t.equal(s.unsealed, 5)
  t.same(Object.keys(s.instances['agent-a']!.tools), ['api'], 'no fabricated tool')
  t.equal(s.instances['agent-a']!.tools.api!.uses, 200, 'the 200 real calls only')
  t.match((await inProcess(auditCommand, [file])).stdout, /\nNOT COUNTED: 5 events without a seal left out/)
  const tasks = await inProcess(tasksCommand, [file])
  t.match(tasks.stdout, /^sidekey audit tasks: 0 tasks, 0 calls with a task, 200 without\nNOT COUNTED: 5 events without a seal left out/)
  const config = join(dir, 'sidekey.yaml')
  writeFileSync(config, 'instance_id: x\nissuers: { local: { type: local_jwt } }\ntools:\n  api: { match: { host: api.tool.test }, issuer: local }\n')
  const scopes = await inProcess(scopesCommand, ['--config', config, '--since', 'all', file])
  t.equal(scopes.code, 0, scopes.stderr)
  t.match(scopes.stdout, /\nNOT COUNTED: 5 events without a seal left out/)
  t.match(scopes.stdout, /used {7}200 calls/)
  t.notMatch(scopes.stdout, /fabricated/)
})

t.test('across a restart: the second run names the first run\'s final checkpoint, same key', async (t) => {
  const started = parse(a2.lines[0]!)
  const lastOfFirst = parse(a1.lines.at(-1)!)
  t.match(started, { event: 'audit.started', previous: { run_id: lastOfFirst.run_id, seq: (lastOfFirst.seq as number) - 1, final: true } })
  t.same(started.key, parse(a1.lines[0]!).key)
  t.not(started.run_id, lastOfFirst.run_id)
  const r = await verify([...a1.lines, ...a2.lines], { keys: a1.jwks.keys })
  t.ok(r.intact, formatVerifyResult(r))
  t.equal(r.runs, 2)
  // The second run alone: fine, with a note that its predecessor is elsewhere.
  const alone = await verify(a2.lines, { keys: a1.jwks.keys })
  t.ok(alone.intact)
  t.match(alone.notes.join('\n'), /continues run .* which is not in the input/)
  // The first run's tail cut, the second run present: the second run's audit.started gives it away.
  const cut = await verify([...a1.lines.slice(0, -1), ...a2.lines])
  t.match(cut.problems, [{ kind: 'tail', run_id: lastOfFirst.run_id }])
})

t.test('three instances merged as a collector interleaves them', async (t) => {
  const streams = [[...a1.lines, ...a2.lines], [...b.lines], [...c.lines]]
  const merged: string[] = []
  // Round-robin in uneven bursts: every stream keeps its own order, the streams interleave.
  for (let i = 0; streams.some((s) => s.length > 0); i++) {
    const s = streams[i % 3]!
    merged.push(...s.splice(0, 1 + (i % 4)))
  }
  const r = await verify(merged, { keys: [...a1.jwks.keys, ...b.jwks.keys, ...c.jwks.keys] })
  t.ok(r.intact, formatVerifyResult(r))
  t.equal(r.runs, 4)
  t.equal(new Set(r.run_details.map((d) => d.instance_id)).size, 3)
  // One line of agent-b deleted from the merge: only agent-b's run fails, named.
  const bLine = merged.findIndex((l) => l.includes('"instance_id":"agent-b"') && l.includes('credential.used'))
  const broken = await verify(merged.filter((_, i) => i !== bLine))
  t.match(broken.problems, [{ kind: 'removed', instance_id: 'agent-b', seq: seqOf(merged[bLine]!) }])
  // agent-c checked against agent-b's key only: a clear error naming agent-c.
  const wrongKey = await verify(c.lines, { keys: b.jwks.keys })
  t.match(wrongKey.problems, [{ kind: 'key', instance_id: 'agent-c', seq: 1 }])
  t.match(wrongKey.problems[0]!.message, /instance agent-c/)
})

t.test('junk around the trail is skipped and counted, never fatal', async (t) => {
  const junk = [
    '', 'plain text from another program', '{"level":30,"time":"2026-01-01T00:00:00.000Z","msg":"an operational line of an older sidekey"}',
    '{"truncated": ', '[1,2,3]', '{"foreign":true}', 'x'.repeat(1_100_000), a1.lines[5]!.slice(0, 40),
  ]
  const r = await verify([...junk.slice(0, 4), ...a1.lines.slice(0, mid), ...junk.slice(4), ...a1.lines.slice(mid)], { keys: a1.jwks.keys })
  t.ok(r.intact, formatVerifyResult(r))
  t.match(r.skipped, { unchained: 1, truncated: 2, not_json: 1, foreign: 2, too_long: 1, total: 7 })
  t.match(formatVerifyResult(r), /skipped 7 lines: 2 truncated, 1 not JSON, 2 foreign JSON, 1 sidekey lines without a chain/)
})

t.test('no input, or no event in it, is never intact', async (t) => {
  for (const lines of [[], ['', 'plain text', '{"level":30,"time":"2026-01-01T00:00:00.000Z","msg":"no event"}']]) {
    const r = await verify(lines, { keys: a1.jwks.keys })
    t.match(r, { intact: false, consistent: false, runs: 0, events: 0 })
    t.equal(formatVerifyResult(r).split('\n')[0], 'no audit events in the input: nothing was verified: NOT INTACT')
  }
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-verify-empty-'))
  writeFileSync(join(dir, 'empty.log'), '')
  for (const args of [['--keys', writeKeys(dir, a1.jwks), join(dir, 'empty.log')], ['-']]) {
    const res = await verifyCli(args)
    t.equal(res.code, 1, res.stdout)
    t.match(res.stdout, /^no audit events in the input/)
  }
})

t.test('sidekey audit verify: files, gzip, stdin, --keys, exit codes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-verify-cli-'))
  const good = join(dir, 'trail.log.gz')
  writeFileSync(good, gzipSync([...a1.lines, ...a2.lines].join('\n') + '\n'))
  const keys = join(dir, 'keys.json')
  writeFileSync(keys, JSON.stringify(a1.jwks))
  // Once as a user runs it.
  const ok = await cli(['audit', 'verify', '--keys', keys, good])
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /^\d+ events in 2 runs, \d+ checkpoints, intact\n/)
  // The rest in process.
  const bad = join(dir, 'bad.log')
  writeFileSync(bad, a1.lines.filter((_, i) => i !== mid).join('\n') + '\n')
  const res = await verifyCli(['--keys=' + keys, bad])
  t.equal(res.code, 1)
  t.match(res.stdout, new RegExp(`NOT INTACT.*\\n  run \\S+ \\(instance agent-a\\) seq ${seqOf(a1.lines[mid]!)}: removed`))
  const json = await verifyCli(['--json', '-'], gzipSync(a2.lines.join('\r\n')))
  t.equal(json.code, 3, json.stdout)
  t.match(JSON.parse(json.stdout), { intact: false, consistent: true, authenticated: false, runs: 1, trust: 'first-use' })
  const cutGz = join(dir, 'cut.log.gz')
  const gz = gzipSync(a1.lines.join('\n'))
  writeFileSync(cutGz, gz.subarray(0, gz.length >> 1))
  const cut = await verifyCli([cutGz])
  t.equal(cut.code, 1)
  t.match(cut.stdout, /cut\.log\.gz: read failed after \d+ lines/)
  t.equal((await verifyCli(['--keys'])).code, 2)
  t.equal((await verifyCli(['--from'])).code, 2)
  t.equal((await verifyCli(['--fleet', 'a.yaml', '--fleet', 'b.yaml'])).code, 2)
  t.match((await verifyCli(['--help'])).stdout, /exit 0 intact.*\n.*1 not intact.*\n.*2 usage.*\n.*3 consistent, not authenticated/)
  t.equal((await verifyCli(['--bogus'])).code, 2)
  t.equal((await verifyCli(['-', '-'])).code, 2)
  t.equal((await verifyCli(['--help'])).code, 0)
  writeFileSync(join(dir, 'nokeys.json'), '{"keys":[]}')
  const noKeys = await verifyCli(['--keys', join(dir, 'nokeys.json'), bad])
  t.equal(noKeys.code, 2)
  t.match(noKeys.stderr, /holds no Ed25519 public key/)
  t.match((await verifyCli(['--keys', join(dir, 'absent.json'), bad])).stderr, /cannot read \(ENOENT\)/)
})

function writeKeys (dir: string, jwks: unknown): string {
  const file = join(dir, 'keys.json')
  writeFileSync(file, JSON.stringify(jwks))
  return file
}

type Verb = (args: string[], io: { stdin: NodeJS.ReadableStream, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream }) => Promise<number>

/** A `sidekey audit` verb run in process, as the CLI runs it. */
async function inProcess (verb: Verb, args: string[], stdinBytes: Buffer = Buffer.alloc(0)): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const sink = (f: (s: string) => void): NodeJS.WritableStream => new Writable({ write (c, _e, cb) { f(String(c)); cb() } })
  const code = await verb(args, { stdin: Readable.from([stdinBytes]), stdout: sink((s) => { stdout += s }), stderr: sink((s) => { stderr += s }) })
  return { code, stdout, stderr }
}

const verifyCli = (args: string[], stdinBytes?: Buffer): ReturnType<typeof inProcess> => inProcess(verifyCommand, args, stdinBytes)
