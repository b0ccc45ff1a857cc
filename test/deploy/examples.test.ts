// Every ready-made config in config/examples/ is one sidekey accepts, and says what its header promises.
import { existsSync, readdirSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import t from 'tap'
import { loadConfigFile } from '../../src/config/load.js'
import type { Config, IssuerConfig, ToolConfig } from '../../src/config/schema.js'
import { cli } from '../helpers/cli.js'
import { readRepoFile, repoPath } from './helpers.js'

const DIR = 'config/examples'
const ENV = { SIDEKEY_INSTANCE_ID: 'agent-0' }
const load = async (name: string): Promise<Readonly<Config>> => loadConfigFile(repoPath(`${DIR}/${name}`), ENV)
const issuerOf = (cfg: Readonly<Config>, tool: ToolConfig): IssuerConfig => cfg.issuers[tool.issuer] as IssuerConfig
const toolFor = (cfg: Readonly<Config>, host: string): ToolConfig => {
  const found = Object.values(cfg.tools).find((tool) => tool.match.host === host)
  if (found === undefined) throw new Error(`no tool for ${host}`)
  return found
}

t.test('every example is a valid config, ready for a read-only container', async (t) => {
  const names = readdirSync(repoPath(DIR)).filter((f) => f.endsWith('.yaml')).sort()
  t.same(names, ['anthropic.yaml', 'azure-openai.yaml', 'bedrock.yaml', 'container.yaml', 'gemini.yaml', 'github.yaml',
    'gitlab.yaml', 'internal-local-jwt.yaml', 'openai-static-key.yaml', 's3.yaml', 'slack.yaml', 'token-exchange.yaml'])
  for (const name of names) {
    const cfg = await load(name)
    t.equal(cfg.instance_id, 'agent-0', `${name}: instance_id from SIDEKEY_INSTANCE_ID`)
    t.ok(isAbsolute(cfg.ca.dir), `${name}: ca.dir is absolute (relative paths land in the read-only /app)`)
    t.equal(cfg.ca.dir, '/var/lib/sidekey/ca', `${name}: the CA on the image's volume`)
    t.match(cfg.listen, /^127\.0\.0\.1:4750$/, `${name}: proxy on loopback`)
    t.equal(cfg.egress.unmatched, 'deny', `${name}: unknown hosts refused`)
    t.ok(Object.keys(cfg.tools).length > 0, `${name}: has tools`)
  }
})

t.test('every example passes with neither SIDEKEY_INSTANCE_ID nor HOSTNAME set (a fresh shell, a bare container)', async (t) => {
  const names = readdirSync(repoPath(DIR)).filter((f) => f.endsWith('.yaml'))
  for (const name of names) {
    const cfg = await loadConfigFile(repoPath(`${DIR}/${name}`), {})
    t.equal(cfg.instance_id, 'sidekey', `${name}: a default instance_id`)
  }
})

// Away from the pod the files an example names (mounted secrets, the CA volume) are not there: --no-files.
t.test('every example passes `sidekey check --no-files`, with no warning', async (t) => {
  const names = readdirSync(repoPath(DIR)).filter((f) => f.endsWith('.yaml'))
  const results = await Promise.all(names.map((name) => cli(['check', '--no-files', '--config', `${DIR}/${name}`])))
  names.forEach((name, i) => {
    const { code, stdout, stderr } = results[i]!
    t.equal(code, 0, `${name}: ${stdout}${stderr}`)
    t.equal(stderr, '', `${name}: no warning (an open wildcard would be one)`)
  })
})

// A new user copies the environment from the header: it must name the placeholder the tool expects.
t.test('each service example says what the agent sets: its placeholder, in an environment variable', async (t) => {
  for (const name of ['s3.yaml', 'bedrock.yaml', 'gemini.yaml', 'azure-openai.yaml', 'gitlab.yaml', 'slack.yaml']) {
    const header = readRepoFile(`${DIR}/${name}`).split('\n').filter((l) => l.startsWith('#')).join('\n')
    for (const tool of Object.values((await load(name)).tools)) {
      if (tool.placeholder === undefined) continue
      const what = `${name}: ${tool.match.host} placeholder ${tool.placeholder}`
      t.match(header, new RegExp(`[A-Z_]+=${tool.placeholder}\\b`), what)
    }
    t.match(header, /sidekey (?:strips|injects)/, `${name}: says what sidekey injects`)
  }
})

const SIGV4 = [
  ['s3.yaml', 's3', /\.s3\.us-east-1\.amazonaws\.com$/],
  ['bedrock.yaml', 'bedrock', /^bedrock-runtime\./],
] as const

t.test('AWS: S3 and Bedrock re-sign with SigV4 under their signing names, on exact hosts', async (t) => {
  for (const [name, service, host] of SIGV4) {
    const cfg = await load(name)
    for (const tool of Object.values(cfg.tools)) {
      t.equal(tool.inject.aws_sigv4?.service, service, `${name}: service ${service}`)
      t.match(tool.match.host, host)
      t.notOk(tool.match.host.startsWith('*'), `${name}: no wildcard over other customers' hosts`)
      t.equal(tool.require_placeholder, true)
      t.equal(issuerOf(cfg, tool).type, 'file', `${name}: a credential_process JSON file`)
    }
  }
})

t.test('Anthropic: every method the SDK uses is allowed (it deletes files and batches)', async (t) => {
  const tool = toolFor(await load('anthropic.yaml'), 'api.anthropic.com')
  for (const method of ['GET', 'POST', 'DELETE']) t.ok(tool.match.methods?.includes(method as never), method)
})

t.test('OpenAI: a static key read from a mounted file, sent as a Bearer token', async (t) => {
  const cfg = await load('openai-static-key.yaml')
  const tool = toolFor(cfg, 'api.openai.com')
  t.equal(issuerOf(cfg, tool).type, 'file')
  t.same(tool.inject, { header: 'Authorization', format: 'Bearer {token}' })
  t.equal(tool.placeholder, 'sidekey')
})

t.test('Anthropic: the key goes in x-api-key, bare, and both auth headers are stripped', async (t) => {
  const cfg = await load('anthropic.yaml')
  const tool = toolFor(cfg, 'api.anthropic.com')
  t.equal(issuerOf(cfg, tool).type, 'file')
  t.same(tool.inject, { header: 'x-api-key', format: '{token}' }, 'no "Bearer "')
  t.same(tool.strip?.map((h) => h.toLowerCase()).sort(), ['authorization', 'x-api-key'])
})

t.test('GitHub: installation tokens from the exec helper the image ships, for the API and for git', async (t) => {
  const cfg = await load('github.yaml')
  const api = toolFor(cfg, 'api.github.com')
  const git = toolFor(cfg, 'github.com')
  const issuer = issuerOf(cfg, api)
  if (issuer.type !== 'exec') return t.fail('expected an exec issuer')
  t.equal(git.issuer, api.issuer, 'one token serves both')
  t.same(git.inject.basic, { username: 'x-access-token' }, 'git over HTTPS takes the token as Basic auth')
  // The helper path is inside the image: the Dockerfile copies config/ to /app/config.
  const script = issuer.command.find((a) => a.endsWith('.mjs')) ?? ''
  t.match(script, /^\/app\/config\//)
  t.ok(existsSync(repoPath(script.replace(/^\/app\//, ''))), `${script} is in the repository`)
  t.equal(issuer.command[0], 'node')
})

t.test('internal services: local_jwt, and plaintext only for a tool pinned to loopback', async (t) => {
  const cfg = await load('internal-local-jwt.yaml')
  for (const tool of Object.values(cfg.tools)) {
    t.equal(issuerOf(cfg, tool).type, 'local_jwt')
    t.type(tool.audience, 'string', 'each token is bound to its service by aud')
    if (tool.plaintext) t.equal(cfg.resolve[tool.match.host], '127.0.0.1', `${tool.match.host} is pinned to loopback`)
  }
  t.ok(Object.values(cfg.tools).some((tool) => tool.plaintext), 'shows the in-pod tool server case')
})

t.test('token exchange: the projected token is exchanged per tool, with and without client auth', async (t) => {
  const cfg = await load('token-exchange.yaml')
  const exchangers = Object.values(cfg.issuers).filter((i) => i.type === 'oauth2_token_exchange')
  t.equal(exchangers.length, 2)
  t.equal(issuerOf(cfg, toolFor(cfg, 'storage.googleapis.com')).type, 'oauth2_token_exchange')
  for (const tool of Object.values(cfg.tools)) {
    t.ok(tool.scopes.length > 0, `${tool.match.host}: scoped`)
    t.type(tool.audience, 'string', `${tool.match.host}: audience`)
  }
})
