import t, { type Test } from 'tap'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { grantablePrefix } from '../../src/reports/scopes-recommend.js'
import { scopesCommand, sinceWindow, type ScopesReport } from '../../src/reports/scopes.js'
import { cli } from '../helpers/cli.js'
import { loadConfigFile } from '../../src/config/load.js'

const CONFIG = `instance_id: scopes-test
issuers:
  gh: { type: file, path: /run/secrets/gh }
  old: { type: file, path: /run/secrets/old }
tools:
  github:
    match: { host: api.github.com }
    issuer: gh
    scopes: [repo, read:org]
  legacy:
    match: { host: legacy.example.com, path_prefix: /v1/ }
    issuer: old
  billing:
    match: { host: billing.example.com, methods: [GET] }
    issuer: old
`

const now = Date.now()
const ago = (days: number): string => new Date(now - days * 86_400_000).toISOString()
const ev = (days: number, o: Record<string, unknown>): string => JSON.stringify({ level: 30, time: ago(days), instance_id: 'a', ...o })
const use = (days: number, tool: string, method: string, path: string, status = 200, extra: Record<string, unknown> = {}): string =>
  ev(days, { event: 'credential.used', tool, credential_id: 'c1', method, host: 'h', path, status, duration_ms: 1, client: 'c', placeholder: 'stripped', request_id: 'r', ...extra })

/** Only GET /repos/acme/* used by github in the window; legacy held and refreshed but never called. */
const TRAIL = [
  ev(20, { event: 'credential.issued', tool: 'github', issuer: 'gh', credential_id: 'c1', issued_at: ago(20), expires_at: null, scopes: ['repo'] }),
  use(10, 'github', 'GET', '/repos/acme/widget/issues/42'),
  use(9, 'github', 'GET', '/repos/acme/gadget/pulls/9f1c2d3e4b5a6978', 404),
  use(8, 'github', 'GET', '/repos/acme/widget/issues/43'),
  use(7, 'github', 'POST', '/repos/acme/widget/issues', 403, { outcome: 'method_denied' }),
  use(60, 'github', 'DELETE', '/user/keys/1'), // outside the 30d window
  ev(5, { event: 'credential.issued', tool: 'legacy', issuer: 'old', credential_id: 'l1', issued_at: ago(5), expires_at: null, scopes: [] }),
  ev(4, { event: 'credential.issued', tool: 'legacy', issuer: 'old', credential_id: 'l2', issued_at: ago(4), expires_at: null, scopes: [] }),
  use(3, 'billing', 'GET', '/invoices/7'),
  use(3, 'ghost', 'GET', '/x'),
  '{"cut": ',
  'plain text',
  '7',
].join('\n') + '\n'

async function run (args: string[], stdin = ''): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const sink = (f: (s: string) => void): Writable => new Writable({ write (c, _e, cb) { f(c.toString()); cb() } })
  const input = new PassThrough()
  input.end(stdin)
  const code = await scopesCommand(args, { stdin: input, stdout: sink((s) => { out += s }), stderr: sink((s) => { err += s }) })
  return { code, out, err }
}

/** The config and the trail, written to a fresh directory; then `--json` over them, parsed. */
async function scopesJson (t: Test, configText: string, trailText: string): Promise<{ dir: string, config: string, trail: string, r: ScopesReport }> {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-scopes-'))
  const config = join(dir, 'sidekey.yaml')
  await writeFile(config, configText)
  const trail = join(dir, 'audit.log')
  await writeFile(trail, trailText)
  const json = await run(['--config', config, '--json', trail])
  t.equal(json.code, 0, json.err)
  return { dir, config, trail, r: JSON.parse(json.out) as ScopesReport }
}

t.test('a trail where only GET /repos/acme/* was used recommends exactly that', async (t) => {
  const { dir, config, trail, r } = await scopesJson(t, CONFIG, TRAIL)
  t.same(r.tools.map((x) => x.tool), ['billing', 'ghost', 'github', 'legacy'])
  const gh = r.tools.find((x) => x.tool === 'github')!
  t.same(gh.granted, { host: 'api.github.com', port: null, methods: null, path_prefix: '/', scopes: ['repo', 'read:org'], issuer: 'gh', mcp: null })
  t.equal(gh.used.calls, 3, 'the refused POST and the call before the window do not count')
  t.same(gh.used.methods, { GET: 3 })
  t.same(gh.used.refused, { method_denied: 1 })
  t.same(gh.used.status, { 200: 2, 404: 1 })
  t.equal(gh.used.common_prefix, '/repos/acme/')
  t.same(gh.used.path_shapes, [{ shape: '/repos/acme/widget/issues/:id', calls: 2 }, { shape: '/repos/acme/gadget/pulls/:id', calls: 1 }])
  t.same(gh.recommend, { methods: ['GET'], path_prefix: '/repos/acme/' })
  t.equal(gh.used.last_use, ago(8))

  const legacy = r.tools.find((x) => x.tool === 'legacy')!
  t.ok(legacy.unused, 'held and refreshed, never used')
  t.equal(legacy.used.issued, 2)
  t.match(legacy.notes.join('\n'), /held and refreshed \(2 issued\) but never used since/)
  const billing = r.tools.find((x) => x.tool === 'billing')!
  t.same(billing.recommend, { path_prefix: '/invoices/' }, 'methods: [GET] already granted; the path narrows')
  const ghost = r.tools.find((x) => x.tool === 'ghost')!
  t.equal(ghost.in_config, false)
  t.match(ghost.notes[0], /not in this config/)
  t.equal(r.patch, 'tools:\n  billing:\n    match:\n      path_prefix: /invoices/\n  github:\n    match:\n      methods: [GET]\n      path_prefix: /repos/acme/\n  # legacy: ' + legacy.notes[0] + '\n')
  t.equal(r.input.skipped, 3)

  const text = await run(['--config', config, trail])
  t.equal(text.code, 0)
  t.match(text.out, /3 lines skipped \(1 truncated, 1 not JSON, 1 foreign JSON\)/)
  t.match(text.out, /recommend {2}methods: \[GET\] {2}path_prefix: \/repos\/acme\//)
  t.match(text.out, /legacy .*UNUSED/)
  t.match(text.out, /# a narrower config: merge into the config file\ntools:\n {2}billing:/)

  const all = await run(['--config', config, '--since', 'all', '--json', trail])
  const gh2 = (JSON.parse(all.out) as ScopesReport).tools.find((x) => x.tool === 'github')!
  t.same(gh2.recommend, { methods: ['DELETE', 'GET'] }, 'with the whole trail the old DELETE /user/keys counts')

  // The patch, merged by hand, is a config sidekey accepts.
  const merged = CONFIG.replace('match: { host: api.github.com }', 'match: { host: api.github.com, methods: [GET], path_prefix: /repos/acme/ }')
  await writeFile(join(dir, 'narrow.yaml'), merged)
  await t.resolves(loadConfigFile(join(dir, 'narrow.yaml')), 'sidekey check accepts the narrowed config')
  const viaCli = await cli(['audit', 'scopes', '--config', join(dir, 'narrow.yaml'), trail])
  t.equal(viaCli.code, 0, viaCli.stderr)
  t.match(viaCli.stdout, /granted {4}methods GET {2}path_prefix \/repos\/acme\//)
  t.notMatch(viaCli.stdout, /\n {2}github:\n/, 'the narrowed grant fits: nothing more to narrow for github')
})

t.test('stdin, usage and config errors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sidekey-scopes-'))
  const config = join(dir, 'sidekey.yaml')
  await writeFile(config, CONFIG)
  const stdin = await run(['--config', config, '--json'], TRAIL)
  t.equal(stdin.code, 0)
  t.equal((JSON.parse(stdin.out) as ScopesReport).tools.length, 4)
  t.equal((await run([])).code, 2, '--config is required')
  t.equal((await run(['--config', config, '--since', 'soon'])).code, 2)
  t.equal((await run(['--bogus'])).code, 2)
  t.equal((await run(['--help'])).code, 0)
  t.equal((await run(['--config', config, join(dir, 'missing.log')])).code, 1)
  await writeFile(join(dir, 'bad.yaml'), 'instance_id: x\nissuers: {}\ntools:\n  a: { match: { host: a.test }, issuer: nope }\n')
  const bad = await run(['--config', join(dir, 'bad.yaml')])
  t.equal(bad.code, 2)
  t.match(bad.err, /bad\.yaml:4:\d+: .*unknown issuer/)
  const empty = await run(['--config', config], '')
  t.match(empty.out, /# nothing to narrow|legacy/)
})

t.test('grantable prefixes stop at a slash and before an id', async (t) => {
  t.equal(grantablePrefix('/repos/acme/widget'), '/repos/acme/')
  t.equal(grantablePrefix('/repos/acme/42/issues/'), '/repos/acme/')
  t.equal(grantablePrefix('/v1/'), '/v1/')
  t.equal(grantablePrefix('/x'), '/')
  t.equal(grantablePrefix(''), '/')
  t.same(sinceWindow('all'), {})
  t.same(sinceWindow('1d', 86_400_000), { fromMs: 0 })
})

const MCP_CONFIG = `instance_id: scopes-mcp
issuers: { gh: { type: file, path: /run/secrets/gh } }
tools:
  gh-mcp:
    match: { host: mcp.example.com, path_prefix: /mcp, methods: [POST] }
    issuer: gh
    mcp: { tools: [get_issue, "search_*", delete_repo, create_issue], prompts: [triage, old_prompt] }
  raw-mcp:
    match: { host: other.example.com, path_prefix: /v1/mcp, methods: [POST] }
    issuer: gh
`
const mcpUse = (mcp: Record<string, unknown>, extra: Record<string, unknown> = {}): string =>
  use(2, 'gh-mcp', 'POST', '/mcp', 200, { mcp, ...extra })
const call = (name: string): Record<string, unknown> => ({ method: 'tools/call', name })
const MCP_TRAIL = [
  mcpUse(call('get_issue')),
  mcpUse(call('get_issue'), { outcome: 'upstream_error', status: 502 }),
  mcpUse(call('search_code')),
  mcpUse({ method: 'tools/list' }),
  mcpUse({ method: 'prompts/get', name: 'triage' }),
  mcpUse({ method: 'resources/read', name: 'repo://acme/readme' }),
  // Refused: the batch for its second member (its first was allowed, answered "not sent"), then a call on its own.
  mcpUse({ method: 'batch', batch: [call('get_issue'), call('list_things')] }, { outcome: 'mcp_denied' }),
  mcpUse(call('delete_everything'), { outcome: 'mcp_denied' }),
  // Refused for another reason: neither called nor refused by mcp:.
  mcpUse(call('create_issue'), { outcome: 'budget_exhausted', status: 429 }),
  use(2, 'raw-mcp', 'POST', '/v1/mcp'),
].join('\n') + '\n'

t.test('MCP tools: the names called become mcp.tools; entries never called and refused names are flagged', async (t) => {
  const { dir, config, trail, r } = await scopesJson(t, MCP_CONFIG, MCP_TRAIL)
  const gh = r.tools.find((x) => x.tool === 'gh-mcp')!
  t.same(gh.granted?.mcp, { tools: ['get_issue', 'search_*', 'delete_repo', 'create_issue'], resources: null, prompts: ['triage', 'old_prompt'] })
  t.same(gh.used.mcp, {
    called: { tools: { get_issue: 2, search_code: 1 }, resources: { 'repo://acme/readme': 1 }, prompts: { triage: 1 } },
    denied: { tools: { delete_everything: 1, list_things: 1 }, resources: {}, prompts: {} },
    truncated: false,
  }, 'the allowed member of a refused batch is neither called nor refused')
  t.same(gh.recommend, { mcp: { tools: ['get_issue', 'search_code'], resources: ['repo://acme/readme'], prompts: ['triage'] } })
  t.same(gh.mcp_unused, { tools: ['delete_repo', 'create_issue'], prompts: ['old_prompt'] })
  const notes = gh.notes.join('\n')
  t.match(notes, /mcp\.tools entries never called .*: delete_repo, create_issue: unused, consider removing/)
  t.match(notes, /mcp\.prompts entries never called .*: old_prompt: unused/)
  t.match(notes, /mcp\.tools refused \(mcp_denied\): delete_everything×1 list_things×1/)
  const raw = r.tools.find((x) => x.tool === 'raw-mcp')!
  t.match(raw.notes.join('\n'), /look like an MCP endpoint: add `mcp:/, 'a tool without mcp: on an /mcp path is pointed at it')
  t.equal(r.patch, 'tools:\n  gh-mcp:\n    mcp:\n      tools: [get_issue, search_code]\n' +
    '      resources: ["repo://acme/readme"]\n      prompts: [triage]\n')

  const text = await run(['--config', config, trail])
  t.match(text.out, /mcp {8}tools get_issue×2 search_code×1\n/)
  t.match(text.out, /mcp denied tools delete_everything×1 list_things×1\n/)
  t.match(text.out, /recommend {2}mcp\.tools: \[get_issue, search_code\] {2}mcp\.resources: \[repo:\/\/acme\/readme\]/)

  // The patch, merged by hand, is a config sidekey accepts, and nothing is left to narrow.
  const merged = MCP_CONFIG.replace(/mcp: \{ tools: .*\}/, 'mcp: { tools: [get_issue, search_code], resources: ["repo://acme/readme"], prompts: [triage] }')
  await writeFile(join(dir, 'narrow.yaml'), merged)
  await t.resolves(loadConfigFile(join(dir, 'narrow.yaml')), 'sidekey check accepts the narrowed config')
  const again = JSON.parse((await run(['--config', join(dir, 'narrow.yaml'), '--json', trail])).out) as ScopesReport
  const narrowed = again.tools.find((x) => x.tool === 'gh-mcp')!
  t.same(narrowed.recommend, {}, 'the narrowed grant fits what was called')
  t.same(narrowed.mcp_unused, {})
  t.same(narrowed.used.mcp?.denied.tools, { delete_everything: 1, list_things: 1 }, 'still refused, still shown')
})
