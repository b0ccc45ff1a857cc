import t from 'tap'
import { PassThrough, Writable } from 'node:stream'
import { formatTasks, summariseTasks, tasksCommand } from '../../src/reports/tasks.js'

const at = (sec: number): string => new Date(Date.parse('2026-01-01T00:00:00Z') + sec * 1000).toISOString()
const use = (sec: number | undefined, o: Record<string, unknown>): string =>
  JSON.stringify({ level: 30, ...(sec === undefined ? {} : { time: at(sec) }), event: 'credential.used', method: 'GET', host: 'h', path: '/', ...o })

const log = [
  use(20, { instance_id: 'b', tool: 'jira', status: 200, task: 't-2' }),
  use(10, { instance_id: 'a', tool: 'github', status: 200, task: 't-1' }),
  use(12, { instance_id: 'a', tool: 'github', status: 401, task: 't-1' }),
  use(15, { instance_id: 'b', tool: 'jira', status: 200, task: 't-1' }),
  use(16, { instance_id: 'a', tool: 'github', status: 200 }),
  use(undefined, { task: 't-3' }),
  JSON.stringify({ event: 'credential.issued', tool: 'github', task: 'not-a-call' }),
  'not json',
  use(30, { instance_id: 'a', tool: 'x\u001b[2Jy', status: 200, task: 'evil\u009b' }),
]

t.test('summariseTasks: per task, its tools, calls, statuses, span and instances, in order of first call', async (t) => {
  const r = await summariseTasks(log)
  t.equal(r.calls, 7)
  t.equal(r.without_task, 1)
  t.same(Object.keys(r.tasks), ['t-1', 't-2', 'evil\u009b', 't-3'], 'by first call; a task without time last')
  t.same(r.tasks['t-1'], {
    calls: 3,
    first: at(10),
    last: at(15),
    instances: ['a', 'b'],
    tools: { github: { calls: 2, status: { 200: 1, 401: 1 } }, jira: { calls: 1, status: { 200: 1 } } },
  })
  t.same(r.tasks['t-3'], { calls: 1, first: null, last: null, instances: [], tools: { '(none)': { calls: 1, status: { 0: 1 } } } })
})

t.test('formatTasks prints one block per task and escapes what the log says', async (t) => {
  const text = formatTasks(await summariseTasks(log))
  t.match(text, /^sidekey audit tasks: 4 tasks, 6 calls with a task, 1 without\n/)
  t.match(text, /^task t-1 {2}3 calls {2}2026-01-01T00:00:10\.000Z \.\. 2026-01-01T00:00:15\.000Z {2}instance a, b\n {2}tool +calls +status\n {2}github +2 +200×1, 401×1\n {2}jira +1 +200×1$/m)
  t.match(text, /^task t-3 {2}1 call {2}\? \.\. \?\n/m)
  t.notOk(/[\u0000-\u001f\u007f-\u009f]/.test(text.replaceAll('\n', '')), 'no control character from the log reaches the terminal')
  t.equal(formatTasks(await summariseTasks([])), 'sidekey audit tasks: 0 tasks, 0 calls with a task, 0 without\n')
})

t.test('tasksCommand: reads stdin, prints JSON with --json, shares the usage errors', async (t) => {
  const run = async (args: string[], input: string[] = []): Promise<{ code: number, out: string, err: string }> => {
    let out = ''
    let err = ''
    const stdin = new PassThrough()
    stdin.end(input.join('\n'))
    const code = await tasksCommand(args, {
      stdin,
      stdout: new Writable({ write (c: Buffer, _e, cb) { out += c.toString(); cb() } }),
      stderr: new Writable({ write (c: Buffer, _e, cb) { err += c.toString(); cb() } }),
    })
    return { code, out, err }
  }
  const json = await run(['--json'], log)
  t.equal(json.code, 0)
  t.same(Object.keys(JSON.parse(json.out).tasks), ['t-1', 't-2', 'evil\u009b', 't-3'])
  const bad = await run(['--nope'])
  t.equal(bad.code, 2)
  t.match(bad.err, /^sidekey audit tasks: .*--nope/)
  t.match((await run(['--help'])).out, /^usage: sidekey audit tasks/)
  t.equal((await run(['/nonexistent/audit.log'])).code, 1)
})
