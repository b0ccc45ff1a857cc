import { parseArgs } from 'node:util'
import {
  AuditInput, checkInputs, describeUnsealed, esc, parseTime, readFailed, readLines, str, type AuditIo,
} from './input.js'
import { counts, table } from './summary.js'
import { TASKS_USAGE as USAGE } from './usage.js'

/**
 * `sidekey audit tasks FILE...`: the calls of each task the agents named in X-Sidekey-Task (the `task` of
 * `credential.used`), with the tools each task reached and the statuses it got, across all inputs and instances.
 *
 * @example
 *   process.stdout.write(formatTasks(await summariseTasks(lines)))
 */

export interface TaskToolSummary {
  calls: number
  /** Response status → count (0: no response). */
  status: Record<string, number>
}

export interface TaskSummary {
  calls: number
  first: string | null
  last: string | null
  /** The instances (config `instance_id`) that served the task, sorted. */
  instances: string[]
  tools: Record<string, TaskToolSummary>
}

export interface TasksReport {
  /** `credential.used` lines read. */
  calls: number
  /** Of which without a task. */
  without_task: number
  /** Tasks by id, in the order of their first call. */
  tasks: Record<string, TaskSummary>
  /** Events without a seal in a sealed trail, left out (see AuditInput), and those counted before the first seal. */
  unsealed: number
  unsealed_counted: number
}

interface TaskAcc {
  calls: number, firstMs: number, lastMs: number, instances: Set<string>, tools: Map<string, TaskToolSummary>
}

export async function summariseTasks (
  lines: AsyncIterable<string> | Iterable<string>, input = new AuditInput()
): Promise<TasksReport> {
  const tasks = new Map<string, TaskAcc>()
  let calls = 0
  let withoutTask = 0
  for await (const rec of input.records(lines)) {
    if (rec.event !== 'credential.used') continue
    calls++
    const id = str(rec.task)
    if (id === undefined) {
      withoutTask++
      continue
    }
    let acc = tasks.get(id)
    if (acc === undefined) {
      acc = { calls: 0, firstMs: Infinity, lastMs: -Infinity, instances: new Set(), tools: new Map() }
      tasks.set(id, acc)
    }
    acc.calls++
    const time = parseTime(rec.time)
    if (time !== undefined) {
      acc.firstMs = Math.min(acc.firstMs, time)
      acc.lastMs = Math.max(acc.lastMs, time)
    }
    const instance = str(rec.instance_id)
    if (instance !== undefined) acc.instances.add(instance)
    const toolName = str(rec.tool) ?? '(none)'
    let tool = acc.tools.get(toolName)
    if (tool === undefined) {
      tool = { calls: 0, status: {} }
      acc.tools.set(toolName, tool)
    }
    tool.calls++
    const code = String(typeof rec.status === 'number' ? rec.status : 0)
    tool.status[code] = (tool.status[code] ?? 0) + 1
  }
  const report: TasksReport = {
    calls,
    without_task: withoutTask,
    tasks: {},
    unsealed: input.counts.unsealed,
    unsealed_counted: input.counts.unsealed_counted,
  }
  // Input order breaks ties (a sort is stable), so tasks without timestamps keep the order they were read in.
  for (const [id, acc] of [...tasks].sort(([, a], [, b]) => a.firstMs - b.firstMs || 0)) {
    report.tasks[id] = {
      calls: acc.calls,
      first: iso(acc.firstMs),
      last: iso(acc.lastMs),
      instances: [...acc.instances].sort(),
      tools: Object.fromEntries([...acc.tools].sort(([a], [b]) => a.localeCompare(b))),
    }
  }
  return report
}

/** One block per task: its span, instances, then a row per tool. Every value from the log is escaped. */
export function formatTasks (report: TasksReport): string {
  const ids = Object.keys(report.tasks)
  const withTask = report.calls - report.without_task
  const out = [`sidekey audit tasks: ${ids.length} task${ids.length === 1 ? '' : 's'}, ` +
    `${withTask} call${withTask === 1 ? '' : 's'} with a task, ${report.without_task} without`]
  const unsealed = describeUnsealed(report)
  if (unsealed !== '') out.push(`NOT COUNTED: ${unsealed}`)
  for (const id of ids) {
    const task = report.tasks[id]!
    const instances = task.instances.length === 0 ? '' : `  instance ${task.instances.map(esc).join(', ')}`
    const calls = `${task.calls} call${task.calls === 1 ? '' : 's'}`
    out.push('', `task ${esc(id)}  ${calls}  ${task.first ?? '?'} .. ${task.last ?? '?'}${instances}`)
    const rows = [['tool', 'calls', 'status']]
    for (const [tool, s] of Object.entries(task.tools)) rows.push([esc(tool), String(s.calls), counts(s.status, '×')])
    out.push(...table(rows).map((r) => '  ' + r))
  }
  return out.join('\n') + '\n'
}

const iso = (ms: number): string | null => Number.isFinite(ms) ? new Date(ms).toISOString() : null

const VERB = 'sidekey audit tasks'

/**
 * The `sidekey audit tasks` verb. Exit codes: 0 done, 1 a file could not be read, 2 bad usage.
 *
 * @example
 *   process.exitCode = await tasksCommand(['audit.log'], process)
 */
export async function tasksCommand (args: string[], io: AuditIo): Promise<number> {
  let values: { json?: boolean, help?: boolean }
  let files: string[]
  try {
    const options = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const
    const parsed = parseArgs({ args, options, allowPositionals: true, strict: true })
    values = parsed.values
    files = parsed.positionals
  } catch (err) {
    io.stderr.write(`${VERB}: ${esc((err as Error).message)}\n${USAGE}`)
    return 2
  }
  if (values.help === true) { io.stdout.write(USAGE); return 0 }
  const stop = await checkInputs(VERB, files, USAGE, io)
  if (stop !== undefined) return stop
  let report: TasksReport
  try {
    report = await summariseTasks(readLines(files, io.stdin))
  } catch (err) {
    return readFailed(VERB, err, io)
  }
  io.stdout.write(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatTasks(report))
  return 0
}
