import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// The bench itself never runs in `npm test`: this only proves `npm run bench` starts, drives a tiny bounded load
// through every column (built-in undici generator, no wrk) and stops, printing its table.
const script = fileURLToPath(new URL('./bench/run.ts', import.meta.url))
const cached = fileURLToPath(new URL('./loader/register.mjs', import.meta.url))

t.test('the bench starts, runs a tiny bounded load and prints the Markdown table', async (t) => {
  const { code, stdout } = await new Promise<{ code: number | null, stdout: string }>((resolve) => {
    // The tests' own TypeScript hooks too: the bench imports most of src/, already transpiled by earlier test files.
    const loaders = ['--import=@tapjs/typescript/import', `--import=${cached}`]
    const child = execFile(process.execPath, [...loaders, script, '--smoke'], {
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, timeout: 100_000, maxBuffer: 1 << 20,
    }, (_err, stdout) => resolve({ code: child.exitCode, stdout }))
  })
  t.equal(code, 0)
  t.match(stdout, /\| load \| proxy \| req\/s \| p50 ms \| p99 ms \|/)
  t.match(stdout, /\*\*Ratios\*\* — HTTP: sidekey\/bare [\d.]+×/)
  t.match(stdout, /### Response scrubbing/)
  t.match(stdout, /\| tools\/list, 200 tools \(20 kept\), SSE \| \d+ \| \d+ \| -?\d+ \| [\d.]+× \|/, 'the MCP section, list filtered')
})
