import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { auditCommand, formatSummary, summarise } from '../../src/reports/summary.js'
import { HOLD_BYTES } from '../../src/reports/input.js'
import { sealTrail } from './trail-generator.js'

const at = (sec: number): string => new Date(Date.parse('2026-01-01T00:00:00Z') + sec * 1000).toISOString()
const line = (o: Record<string, unknown>): string => JSON.stringify({ level: 30, ...o })

/** Two instances sharing a log stream (lines interleaved, one use before its credential's issue line). */
function fleetLog (): string[] {
  const a = (sec: number, o: Record<string, unknown>) => line({ time: at(sec), instance_id: 'agent-a', ...o })
  const b = (sec: number, o: Record<string, unknown>) => line({ time: at(sec), instance_id: 'agent-b', ...o })
  const use = (tool: string, id: string | null, status = 200, extra: Record<string, unknown> = {}) =>
    ({ event: 'credential.used', tool, credential_id: id, method: 'GET', host: 'h', path: '/', status, duration_ms: 5, client: 'c', placeholder: 'stripped', request_id: 'r', ...extra })
  return [
    a(0, { msg: 'listening', proxy: '127.0.0.1:4750' }),
    a(5, use('github', 'a1')), // before the issued line: joined anyway
    a(0, { event: 'credential.issued', tool: 'github', issuer: 'local', credential_id: 'a1', issued_at: at(0), expires_at: at(600), scopes: [] }),
    b(0, { event: 'credential.issued', tool: 'github', issuer: 'local', credential_id: 'b1', issued_at: at(0), expires_at: at(600), scopes: [] }),
    a(60, use('github', 'a1')),
    a(100, use('github', 'a1', 401)),
    a(300, { event: 'credential.issued', tool: 'github', issuer: 'local', credential_id: 'a2', issued_at: at(300), expires_at: at(900), scopes: [], shared_with: ['crm'] }),
    a(310, use('github', 'a2')),
    a(320, use('crm', 'a2', 200, { placeholder: 'unexpected' })),
    a(330, use('crm', null, 503, { outcome: 'credential_unavailable' })),
    a(340, use('crm', 'zz-unknown')),
    a(350, { event: 'credential.refresh_failed', tool: 'crm', issuer: 'idp', error: 'SIDEKEY_ISSUER_FAILED', attempt: 1, retry_in_ms: 1000 }),
    a(351, { event: 'anomaly', kind: 'unexpected_credential', tool: 'crm', detail: 'x' }),
    a(352, { event: 'anomaly', kind: 'unmatched_destination', tool: null, detail: 'x' }),
    a(420, { event: 'anomaly', kind: 'unexpected_credential', tool: 'crm', detail: 'x', suppressed: 7 }),
    a(353, { event: 'egress.denied', host: 'evil.test', port: 443, reason: 'no_tool' }),
    'not json at all',
    '{"truncated": ',
    '[1,2,3]',
    '',
    b(30, use('github', 'b1')),
    b(90, use('github', 'b1', 500)),
  ]
}

t.test('summarise a multi-instance log: per instance and tool', async (t) => {
  const s = await summarise(fleetLog())
  t.equal(s.lines, 22)
  t.equal(s.skipped, 3, 'non-JSON lines counted, not fatal (blank lines ignored)')
  t.equal(s.other, 1, 'non-audit log lines')
  t.same(Object.keys(s.instances), ['agent-a', 'agent-b'])
  const a = s.instances['agent-a']!
  t.equal(a.first, at(0))
  t.equal(a.last, at(420))
  t.equal(a.egress_denied, 1)
  t.same(a.anomalies, { unexpected_credential: 8, unmatched_destination: 1 }, 'a rate-limit summary line counts for what it stands for')
  t.same(Object.keys(a.tools), ['crm', 'github'])
  const gh = a.tools.github!
  t.equal(gh.uses, 4)
  t.equal(gh.credentials, 2)
  t.same(gh.credential_ids, ['a1', 'a2'])
  t.same(gh.status, { 200: 3, 401: 1 })
  t.equal(gh.issued, 2)
  t.same(gh.age_at_use_seconds, { known: 4, unknown: 0, p50: 10, p90: 100, max: 100 }, 'ages 5, 60, 100, 10')
  t.equal(gh.first_use, at(5))
  t.equal(gh.last_use, at(310))
  const crm = a.tools.crm!
  t.equal(crm.uses, 3)
  t.equal(crm.credentials, 2)
  t.same(crm.age_at_use_seconds, { known: 1, unknown: 1, p50: 20, p90: 20, max: 20 }, 'the shared credential joins across tools')
  t.same(crm.outcomes, { credential_unavailable: 1 })
  t.equal(crm.unexpected_credential, 1)
  t.equal(crm.refresh_failures, 1)
  t.same(crm.anomalies, { unexpected_credential: 8 })
  const b = s.instances['agent-b']!.tools.github!
  t.same([b.uses, b.credentials, b.age_at_use_seconds.max, b.status], [2, 1, 90, { 200: 1, 500: 1 }])
})

t.test('formatSummary prints a table per instance, escaping what the log says', async (t) => {
  const text = formatSummary(await summarise(fleetLog()))
  t.match(text, /^sidekey audit: 2 instances, 17 events, 22 lines; 3 lines skipped \(1 truncated, 1 not JSON, 1 foreign JSON\)$/m)
  t.match(text, /^instance agent-a {2}2026-01-01T00:00:00\.000Z \.\. 2026-01-01T00:07:00\.000Z {2}events 14 {2}egress denied 1$/m)
  t.match(text, /^ {2}anomalies: unexpected_credential 8, unmatched_destination 1$/m)
  t.match(text, /^ {2}tool +uses +creds +age at use p50\/p90\/max +status +issued +refresh failed +anomalies$/m)
  t.match(text, /^ {2}github +4 +2 +10s \/ 1m40s \/ 1m40s +200×3, 401×1 +2 +0 +-$/m)
  t.match(text, /^ {2}crm +3 +2 +20s \/ 20s \/ 20s \(1 unknown\) +200×2, 503×1/m)
  const evil = await summarise([line({ event: 'credential.used', instance_id: 'x\u001b[2J\ny', tool: 'a\u009bb', status: 200, time: at(0) })])
  const out = formatSummary(evil)
  t.notMatch(out, /[\u001b\u009b]/)
  t.match(out, 'x\\u001b[2J\\u000ay')
})

t.test('summarise reads async iterables too', async (t) => {
  async function * gen () { yield * fleetLog() }
  t.equal((await summarise(gen())).events, 17)
})

function io (stdinText = '') {
  let out = ''
  let err = ''
  const stdin = new PassThrough()
  stdin.end(stdinText)
  return {
    io: {
      stdin,
      stdout: new Writable({ write (c, _e, cb) { out += String(c); cb() } }),
      stderr: new Writable({ write (c, _e, cb) { err += String(c); cb() } }),
    },
    out: () => out,
    err: () => err,
  }
}

t.test('sidekey audit FILE... reads many files (plain and .gz) and prints the table or --json', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-audit-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const lines = fleetLog()
  const f1 = join(dir, 'a.log')
  const f2 = join(dir, 'b.log.gz')
  await writeFile(f1, lines.slice(0, 11).join('\n') + '\n')
  await writeFile(f2, gzipSync(lines.slice(11).join('\r\n')))
  const text = io()
  t.equal(await auditCommand([f1, f2], text.io), 0)
  t.match(text.out(), /^instance agent-b/m)
  t.equal(text.err(), '')
  const json = io()
  t.equal(await auditCommand(['--json', f1, f2], json.io), 0)
  const parsed = JSON.parse(json.out())
  t.same(parsed, JSON.parse(JSON.stringify(await summarise(lines))), 'same result as one stream')
})

t.test('sidekey audit reads stdin with no file or -', async (t) => {
  for (const args of [[], ['-'], ['--json', '-']]) {
    const s = io(fleetLog().join('\n'))
    t.equal(await auditCommand(args, s.io), 0)
    t.match(s.out(), args.includes('--json') ? /"agent-a"/ : /instance agent-a/)
  }
})

t.test('sidekey audit: usage errors exit 2, unreadable files exit 1', async (t) => {
  const bad = io()
  t.equal(await auditCommand(['--jsn'], bad.io), 2)
  t.match(bad.err(), /unknown option --jsn\nusage: sidekey audit/)
  const twice = io()
  t.equal(await auditCommand(['-', '-'], twice.io), 2)
  const missing = io()
  t.equal(await auditCommand(['/nonexistent/sidekey.log'], missing.io), 1)
  t.match(missing.err(), 'cannot read /nonexistent/sidekey.log: ENOENT')
  t.equal(missing.out(), '', 'nothing half-printed')
  const help = io()
  t.equal(await auditCommand(['--help'], help.io), 0)
  t.match(help.out(), /^usage: sidekey audit/)
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-audit-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const corrupt = join(dir, 'broken.gz')
  await writeFile(corrupt, Buffer.from('definitely not gzip'))
  const c = io()
  t.equal(await auditCommand([corrupt], c.io), 1)
  t.match(c.err(), /read failed/)
})

t.test('a sealed trail: unsealed events are left out wherever they are, held back until the first seal', async (t) => {
  const sealed = sealTrail(fleetLog(), 4).lines
  const forged = (i: number): string => line({ time: at(1000 + i), instance_id: 'agent-a', event: 'credential.used', tool: 'fabricated', credential_id: 'a1', status: 200 })
  const clean = await summarise(sealed)
  // Prepended (before any seal is seen), in the middle and appended.
  const s = await summarise([forged(0), forged(1), ...sealed.slice(0, 5), forged(2), ...sealed.slice(5), forged(3), forged(4)])
  t.equal(s.unsealed, 5)
  t.equal(s.unsealed_counted, 0)
  t.equal(s.events, clean.events, 'the same events as the sealed trail alone')
  t.same(s.instances, clean.instances)
  t.match(formatSummary(s), /\nNOT COUNTED: 5 events without a seal left out \(sidekey seals every line: someone else wrote them/)
  // A trail with no seal at all (a sidekey without the chain): every event counts, nothing is said.
  const plain = await summarise([forged(0), ...fleetLog()])
  t.equal(plain.unsealed, 0)
  t.equal(plain.events, fleetLog().filter((l) => l.includes('"event"')).length + 1)
  t.notMatch(formatSummary(plain), /NOT COUNTED/)
})

t.test('more unsealed events before the first seal than can be held back: counted, and said so', async (t) => {
  const pad = 'x'.repeat(1000)
  const forged = Array.from({ length: Math.ceil(HOLD_BYTES / 1100) + 10 }, (_, i) => line({ time: at(i), instance_id: 'agent-a', event: 'credential.used', tool: 'fabricated', pad }))
  const s = await summarise([...forged, ...sealTrail(fleetLog()).lines])
  t.equal(s.unsealed_counted, forged.length)
  t.match(formatSummary(s), new RegExp(`NOT COUNTED: ${forged.length} events without a seal, read before the trail's first sealed line, were counted: verify the trail`))
})
