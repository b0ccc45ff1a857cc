import { readFileSync } from 'node:fs'

/**
 * Summarises a `node --cpu-prof` profile: self time by function and by file (package), top N.
 * Usage: TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import test/bench/profile-summary.ts FILE.cpuprofile [N]
 */

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[] }

const [file, n = '35'] = process.argv.slice(2)
const p = JSON.parse(readFileSync(file!, 'utf8')) as Profile
const byId = new Map(p.nodes.map((x) => [x.id, x]))
const self = new Map<number, number>()
for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0))
const total = [...self.values()].reduce((a, b) => a + b, 0)
const fn = new Map<string, number>()
const pkg = new Map<string, number>()
for (const [id, us] of self) {
  const f = byId.get(id)!.callFrame
  const short = f.url.replace(/^.*node_modules\/(\.cache\/sidekey-bench\/)?/, '').replace(/^file:\/\//, '')
  const key = `${f.functionName || '(anon)'} ${short}:${f.lineNumber + 1}`
  fn.set(key, (fn.get(key) ?? 0) + us)
  const m = /node_modules\/(?:\.cache\/sidekey-bench\/)?((?:@[^/]+\/)?[^/]+)/.exec(f.url)
  const group = f.url === '' ? `(${f.functionName})` : f.url.startsWith('node:') ? f.url.split('/')[0]! + ' ' + f.url : m !== null ? m[1]! : short
  pkg.set(group, (pkg.get(group) ?? 0) + us)
}
const show = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (total ${(total / 1e6).toFixed(2)} s)`)
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`)
}
// Inclusive: each sample counts once for every distinct function on its stack.
const parent = new Map<number, number>()
for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id)
const label = (id: number): string => {
  const f = byId.get(id)!.callFrame
  return `${f.functionName || '(anon)'} ${f.url.replace(/^.*node_modules\/(\.cache\/sidekey-bench\/)?/, '')}:${f.lineNumber + 1}`
}
const incl = new Map<string, number>()
for (const [id, us] of self) {
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) seen.add(label(cur))
  for (const k of seen) incl.set(k, (incl.get(k) ?? 0) + us)
}
incl.delete(label(p.nodes[0]!.id))
show('self time by function', fn)
show('inclusive time by function', incl)
show('self time by file', pkg)
