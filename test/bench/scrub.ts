import { Scrubber, basicNeedles, tokenNeedles } from '../../src/proxy/scrub.js'

/**
 * The cost of response scrubbing (src/proxy/scrub.ts), measured in the bench process: a typical answer's headers
 * scrubbed (always on), and text bodies streamed through a body scrubber (per tool, `scrub_body`) in the chunk
 * sizes undici delivers. No needle occurs: the common case. `scale` 1 is the full run (200,000 header sets, 256 MiB
 * of body per chunk size).
 */
export function scrubTable (out: string[], scale: number): void {
  const token = 'sk-bench-' + 'a1b2c3d4'.repeat(5)
  const scrubber = new Scrubber(basicNeedles('agent', token, 'sidekey'))
  const headers = [
    'content-type', 'application/json; charset=utf-8', 'content-length', '1024', 'date', new Date().toUTCString(),
    'server', 'nginx', 'cache-control', 'no-store', 'x-request-id', '0f8fad5b-d9cb-469f-a165-70867728950e',
    'strict-transport-security', 'max-age=63072000', 'set-cookie', 'session=abc123; Path=/; HttpOnly; Secure',
    'link', '<https://api.example.com/v1/items?page=2>; rel="next"', 'etag', 'W/"5e15153d-120f"',
  ]
  const rounds = Math.ceil(200_000 * scale)
  for (let i = 0; i < 1000; i++) scrubber.headers(headers.slice())
  const headerNs = cpuNs(() => { for (let i = 0; i < rounds; i++) scrubber.headers(headers.slice()) }) / rounds
  const copyNs = cpuNs(() => { for (let i = 0; i < rounds; i++) headers.slice() }) / rounds
  out.push('### Response scrubbing (src/proxy/scrub.ts, in the bench process)', '')
  out.push(`Needles of one basic-auth credential (${token.length}-byte token, ${tokenNeedles(token, 'sidekey').length + 1} spellings before de-duplication): ` +
    'raw, 4 percent-encodings, base64 and base64url at 3 alignments, the exact basic value. No needle occurs in the input (the common case). ' +
    'CPU time of this process (user + system), so that other load on the machine does not count.', '')
  out.push('| | cost |', '|---|--:|')
  out.push(`| headers: ${headers.length / 2} fields of a typical answer, per response (always on) | ${(headerNs - copyNs).toFixed(0)} ns |`)
  const total = Math.ceil(256 * scale) * 2 ** 20
  const text = Buffer.from(JSON.stringify({ items: Array.from({ length: 2000 }, (_, i) => ({ id: i, name: `item ${i}`, note: 'lorem ipsum dolor sit amet' })) }))
  for (const size of [1024, 16 * 1024, 64 * 1024]) {
    const chunks: Buffer[] = []
    for (let off = 0; chunks.length * size < total; off = (off + size) % (text.length - size)) chunks.push(text.subarray(off, off + size))
    const body = scrubber.body()
    let sent = 0
    const ns = cpuNs(() => {
      for (const c of chunks) sent += body.push(c).length
      sent += body.end().length
    })
    out.push(`| body in ${size / 1024} KiB chunks: scrubbed throughput, one core | ${(sent / 2 ** 20 / (ns / 1e9)).toFixed(0)} MiB/s (${(ns / (sent / 1024)).toFixed(0)} ns per KiB) |`)
  }
  out.push('')
}

/** CPU time (user + system) `fn` took, in ns. */
function cpuNs (fn: () => void): number {
  const before = process.cpuUsage()
  fn()
  const used = process.cpuUsage(before)
  return (used.user + used.system) * 1000
}
