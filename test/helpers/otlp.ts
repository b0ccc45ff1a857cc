import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * An OTLP/HTTP traces receiver (POST /v1/traces, application/x-protobuf), decoding ExportTraceServiceRequest by the
 * field numbers of opentelemetry-proto's trace.proto, common.proto and resource.proto. Keeps every raw body too, so
 * a test can look for a secret in any byte exported.
 */
export interface ExportedSpan {
  traceId: string
  spanId: string
  parentSpanId: string
  name: string
  kind: number
  /** Status.code: 0 unset, 1 ok, 2 error. */
  statusCode: number
  attributes: Record<string, string | number | boolean>
  resource: Record<string, string | number | boolean>
}

export interface OtlpReceiver {
  readonly url: string
  readonly spans: ExportedSpan[]
  readonly bodies: Buffer[]
  readonly contentTypes: string[]
  close: () => Promise<void>
}

export async function startOtlpReceiver (): Promise<OtlpReceiver> {
  const spans: ExportedSpan[] = []
  const bodies: Buffer[] = []
  const contentTypes: string[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      bodies.push(body)
      contentTypes.push(req.headers['content-type'] ?? '')
      if (req.method === 'POST' && req.url === '/v1/traces') spans.push(...decodeExport(body))
      // An empty ExportTraceServiceResponse: full success.
      const status = req.url === '/v1/traces' ? 200 : 404
      res.writeHead(status, { 'content-type': 'application/x-protobuf', 'content-length': 0 })
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    bodies,
    contentTypes,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

type Field = { n: number, wire: number, int: bigint, bytes: Buffer }

/**
 * The protobuf wire format: (field number, wire type) tags, each followed by a varint, a 64- or 32-bit value or a
 * length-prefixed one.
 */
function fields (buf: Buffer): Field[] {
  const out: Field[] = []
  let i = 0
  const varint = (): bigint => {
    let v = 0n
    let shift = 0n
    for (;;) {
      const b = buf[i++]!
      v |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return v
      shift += 7n
    }
  }
  while (i < buf.length) {
    const tag = Number(varint())
    const n = tag >>> 3
    const wire = tag & 7
    if (wire === 0) out.push({ n, wire, int: varint(), bytes: Buffer.alloc(0) })
    else if (wire === 1) {
      out.push({ n, wire, int: buf.readBigUInt64LE(i), bytes: buf.subarray(i, i + 8) }); i += 8
    } else if (wire === 5) {
      out.push({ n, wire, int: BigInt(buf.readUInt32LE(i)), bytes: buf.subarray(i, i + 4) }); i += 4
    } else if (wire === 2) {
      const len = Number(varint())
      out.push({ n, wire, int: 0n, bytes: buf.subarray(i, i + len) }); i += len
    } else throw new Error(`unexpected wire type ${wire}`)
  }
  return out
}

/** AnyValue: 1 string, 2 bool, 3 int, 4 double (others are not sent by sidekey). */
function anyValue (buf: Buffer): string | number | boolean {
  const f = fields(buf)[0]
  if (f === undefined) return ''
  if (f.n === 1) return f.bytes.toString('utf8')
  if (f.n === 2) return f.int !== 0n
  if (f.n === 3) return Number(BigInt.asIntN(64, f.int))
  if (f.n === 4) return f.bytes.readDoubleLE(0)
  return `<field ${f.n}>`
}

/** repeated KeyValue: 1 key, 2 value. */
function keyValues (list: Field[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const kv of list) {
    const f = fields(kv.bytes)
    out[f.find((x) => x.n === 1)!.bytes.toString('utf8')] = anyValue(f.find((x) => x.n === 2)?.bytes ?? Buffer.alloc(0))
  }
  return out
}

/** ExportTraceServiceRequest 1: ResourceSpans (1 resource, 2 scope_spans (2 spans)). */
export function decodeExport (body: Buffer): ExportedSpan[] {
  const spans: ExportedSpan[] = []
  for (const rs of fields(body).filter((f) => f.n === 1)) {
    const rsf = fields(rs.bytes)
    const resourceBytes = rsf.find((f) => f.n === 1)?.bytes
    const resource = resourceBytes === undefined ? {} : keyValues(fields(resourceBytes).filter((f) => f.n === 1))
    for (const ss of rsf.filter((f) => f.n === 2)) {
      for (const s of fields(ss.bytes).filter((f) => f.n === 2)) spans.push(span(fields(s.bytes), resource))
    }
  }
  return spans
}

/** Span: 1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind, 9 attributes, 15 status (3 code). */
function span (f: Field[], resource: Record<string, string | number | boolean>): ExportedSpan {
  const hex = (n: number): string => f.find((x) => x.n === n)?.bytes.toString('hex') ?? ''
  const status = f.find((x) => x.n === 15)
  return {
    traceId: hex(1),
    spanId: hex(2),
    parentSpanId: hex(4),
    name: f.find((x) => x.n === 5)?.bytes.toString('utf8') ?? '',
    kind: Number(f.find((x) => x.n === 6)?.int ?? 0n),
    statusCode: status === undefined ? 0 : Number(fields(status.bytes).find((x) => x.n === 3)?.int ?? 0n),
    attributes: keyValues(f.filter((x) => x.n === 9)),
    resource,
  }
}
