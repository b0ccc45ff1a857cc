// Every ready-made config in config/examples/ is one sidekey accepts, and says what its header promises.
import { existsSync, readdirSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import t from 'tap'
import { loadConfigFile } from '../../src/config/load.js'
import type { Config, IssuerConfig, ToolConfig } from '../../src/config/schema.js'
import { repoPath } from './helpers.js'

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
  t.same(names, ['anthropic.yaml', 'container.yaml', 'github.yaml', 'internal-local-jwt.yaml', 'openai-static-key.yaml', 'token-exchange.yaml'])
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

