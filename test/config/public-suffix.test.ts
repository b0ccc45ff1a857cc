import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseConfig } from '../../src/config/load.js'
import { describeOpenWildcard, openWildcards } from '../../src/config/public-suffix.js'
import { minimal } from './helpers.js'

// A wildcard tool matches every name under its suffix, at any depth: where others can register those names, they
// receive the tool's credential (docs/threat-model.md, "A tool (upstream)").

const toolsWith = (...hosts: string[]): string =>
  hosts.map((host, i) => `  t${i}: { match: { host: "${host}" }, issuer: local }\n`).join('')

const open = (...hosts: string[]): ReturnType<typeof openWildcards> =>
  openWildcards(parseConfig(minimal(toolsWith(...hosts)), 'inline.yaml').tools)

t.test('a wildcard over a public suffix, ICANN or private, is named with the risk; one over a domain is not', async (t) => {
  const found = open('*.co.uk', '*.herokuapp.com', '*.example.com', '*.GitHub.io.', '*.api.example.com', 'x.herokuapp.com')
  t.same(found.map((w) => [w.tool, w.suffix, w.rule, w.section]), [
    ['t0', 'co.uk', 'co.uk', 'ICANN'],
    ['t1', 'herokuapp.com', 'herokuapp.com', 'private'],
    ['t3', 'github.io', 'github.io', 'private'],
  ])
  const [icann, hosted] = found.map(describeOpenWildcard)
  t.match(icann, /^tool t0: match\.host "\*\.co\.uk": co\.uk is a public suffix .*anyone can register a name under it and receive this tool's credential/)
  t.match(hosted, /herokuapp\.com .*provider hands out to customers.*anyone with an account there can get a name under it/)
})

t.test('a wildcard above a public suffix covers it: *.amazonaws.com reaches every bucket under s3.amazonaws.com', async (t) => {
  // This reads the list's trie below a suffix, which tldts has no API for: a new trie layout fails here.
  const [aws, windows] = open('*.amazonaws.com', '*.windows.net', '*.openai.com', '*.anthropic.com', '*.google.com')
  t.equal(aws?.rule, 's3.amazonaws.com')
  t.equal(aws?.section, 'private')
  t.ok(aws!.more > 100, `and the other AWS suffixes (${aws!.more})`)
  t.match(describeOpenWildcard(aws!), /"\*\.amazonaws\.com": it covers s3\.amazonaws\.com \(and \d+ more\), a suffix whose names/)
  t.equal(windows?.suffix, 'windows.net', 'Azure storage names under core.windows.net')
  t.equal(windows?.rule.endsWith('.core.windows.net'), true)
  t.equal(open('*.openai.com', '*.anthropic.com', '*.google.com', '*.slack.com').length, 0, 'no rule under these')
})

t.test('a name under a "*." rule of the list is itself a public suffix', async (t) => {
  // `*.ck` makes every second-level name under ck a public suffix.
  t.same(open('*.foo.ck').map((w) => [w.suffix, w.rule, w.section]), [['foo.ck', 'foo.ck', 'ICANN']])
  t.same(open('*.compute.amazonaws.com').map((w) => w.rule), ['*.compute.amazonaws.com'])
})

t.test('sidekey check warns on stderr and still passes the config', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-psl-'))
  const file = join(dir, 'sidekey.yaml')
  writeFileSync(file, minimal(toolsWith('*.herokuapp.com', '*.example.com', '*.co.uk')))
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [resolve('dist/cli.js'), 'check', '--config', file])
  t.match(stdout, /: ok\n$/)
  const warnings = stderr.split('\n').filter((l) => l.includes('Public Suffix List'))
  t.equal(warnings.length, 2, stderr)
  t.match(warnings[0], /^sidekey: warning: tool t0: match\.host "\*\.herokuapp\.com"/)
  t.match(warnings[1], /^sidekey: warning: tool t2: match\.host "\*\.co\.uk"/)
  t.notMatch(stderr, /example\.com/)
})
