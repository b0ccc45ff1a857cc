import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ProxyAgent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { startSidekey } from '../helpers/sidekey.js'
import { needBinary, systemBinary } from '../helpers/system-binary.js'

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url))

/** Runs promtool in deploy/prometheus/, feeding `input` on stdin when given. */
function run (cmd: string, args: string[], input?: string): Promise<{ code: number, output: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { cwd: dir, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr })
    })
    child.stdin?.end(input ?? '')
  })
}

const bin = await systemBinary('promtool', 'prometheus')
const promtool = bin.path
const skip = bin.skip

t.test('the alert rules pass promtool check and their unit tests', { skip }, async (t) => {
  if (!needBinary(t, bin) || promtool === undefined) return
  const check = await run(promtool, ['check', 'rules', 'alerts.yaml'])
  t.equal(check.code, 0, check.output)
  t.match(check.output, /SUCCESS: \d+ rules found/)
  const test = await run(promtool, ['test', 'rules', 'alerts.test.yaml'])
  t.equal(test.code, 0, test.output)
  t.match(test.output, /SUCCESS/)
})

// What an outside checker does: `curl <admin>/metrics | promtool check metrics`, on the whole endpoint (sidekey_*,
// process_* and nodejs_* alike), after traffic has created the labelled series.
t.test('the whole /metrics output of a running sidekey passes promtool check metrics',
  { skip },
  async (t) => {
    if (!needBinary(t, bin)) return
    const up = await startUpstream()
    t.teardown(() => up.close())
    const sk = await startSidekey(t, `
instance_id: promtool-test
ca: { dir: {{CA_DIR}} }
resolve: { api.tool.test: 127.0.0.1, nowhere.tool.test: 127.0.0.1 }
issuers: { local: { type: local_jwt, ttl: 10m } }
tools:
  api: { match: { host: api.tool.test, port: ${up.port}, methods: [GET] }, issuer: local, scopes: [read], plaintext: true }
`)
    const dispatcher = new ProxyAgent({ uri: sk.proxyUrl, proxyTunnel: false })
    t.teardown(() => dispatcher.close())
    const call = async (url: string, method: 'GET' | 'DELETE' = 'GET'): Promise<number> => {
      const res = await request(url, { dispatcher, method })
      await res.body.dump()
      return res.statusCode
    }
    t.equal(await call(`http://api.tool.test:${up.port}/v1/items`), 200, 'a proxied request')
    t.equal(await call(`http://api.tool.test:${up.port}/v1/items/1`, 'DELETE'), 403, 'a method the tool does not allow')
    t.equal(await call(`http://nowhere.tool.test:${up.port}/`), 403, 'a destination no tool covers')
    await sk.app.audit.settled() // the anomaly detectors run after the response

    const res = await request(`${sk.adminUrl}/metrics`)
    const text = await res.body.text()
    t.equal(res.statusCode, 200)
    t.match(text, /^sidekey_requests_total\{tool="api",method="GET",code="200"\} 1$/m)
    t.match(text, /^sidekey_egress_denied_total [1-9]/m)
    t.match(text, /^sidekey_ca_expires_in_seconds [1-9]\d*$/m, 'the CA gauge is in the checked text')
    t.match(text, /^process_cpu_seconds_total /m, 'the default process metrics are in the checked text')
    t.match(text, /^# TYPE nodejs_active_handles gauge$/m)

    const check = await run(promtool!, ['check', 'metrics'], text)
    t.equal(check.code, 0, `promtool check metrics:\n${check.output}`)
    t.equal(check.output.trim(), '', 'no lint complaint')
  })
