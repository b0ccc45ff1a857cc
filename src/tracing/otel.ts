import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { IncomingHttpHeaders } from 'node:http'
import {
  ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span as OtelSpan, type TextMapGetter, type Tracer,
} from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider,
} from '@opentelemetry/sdk-trace'
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions'
import type { TracingConfig } from '../config/schema.js'
import type { Span, SpanValue, Tracing } from './index.js'

const HEADERS: TextMapGetter<IncomingHttpHeaders> = {
  get: (carrier, key) => carrier[key],
  keys: (carrier) => Object.keys(carrier),
}

/** What undici publishes around each upstream connection (DNS, TCP and TLS together: it shows no finer phase). */
interface ConnectMessage {
  readonly connectParams: {
    readonly protocol: string, readonly host: string, readonly hostname: string, readonly port: string
  }
  readonly error?: NodeJS.ErrnoException
}

/**
 * Spans exported over OTLP/HTTP (protobuf) in batches from a bounded queue: a full queue drops spans, never waits,
 * and an unreachable collector never touches a request.
 */
export class OtelTracing implements Tracing {
  readonly #provider: TracerProvider
  readonly #tracer: Tracer
  readonly #propagator = new W3CTraceContextPropagator()
  #dialing: Span | undefined
  /** Connections being opened, per origin, oldest first: undici names no connection, only its origin. */
  readonly #connecting = new Map<string, Span[]>()
  readonly #unsubscribe: () => void
  readonly #exportTimeout: number

  constructor (config: TracingConfig, instanceId: string, version: string) {
    this.#exportTimeout = config.export_timeout
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: config.service_name, [ATTR_SERVICE_VERSION]: version, 'service.instance.id': instanceId,
      }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.ratio) }),
      spanProcessors: [new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url: config.endpoint, timeoutMillis: config.export_timeout }),
        maxQueueSize: config.max_queue,
        maxExportBatchSize: Math.min(512, config.max_queue),
        scheduledDelayMillis: config.delay,
        exportTimeoutMillis: config.export_timeout,
      })],
    })
    this.#tracer = this.#provider.getTracer('sidekey', version)
    this.#unsubscribe = this.#watchConnections()
  }

  request (headers: IncomingHttpHeaders): Span {
    const parent = headers.traceparent === undefined
      ? ROOT_CONTEXT
      : this.#propagator.extract(ROOT_CONTEXT, headers, HEADERS)
    return this.#start('sidekey request', SpanKind.SERVER, parent)
  }

  root (name: string): Span {
    return this.#start(name, SpanKind.INTERNAL, ROOT_CONTEXT)
  }

  dialing (span: Span | undefined): void {
    this.#dialing = span
  }

  /** Sends what is queued, for at most `export_timeout`: a collector that is down never holds up a shutdown. */
  async close (): Promise<void> {
    this.#unsubscribe()
    let timer: NodeJS.Timeout | undefined
    const cut = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.#exportTimeout) })
    await Promise.race([this.#provider.shutdown().catch(() => {}), cut])
    clearTimeout(timer)
  }

  #start (name: string, kind: SpanKind, parent: Context): Span {
    const span = this.#tracer.startSpan(name, { kind }, parent)
    return span.isRecording() ? new RecordedSpan(this, span) : new UnsampledSpan(span)
  }

  /** A span under `parent` (called by RecordedSpan.child). */
  childOf (parent: OtelSpan, name: string, client: boolean): Span {
    return this.#start(name, client ? SpanKind.CLIENT : SpanKind.INTERNAL, trace.setSpan(ROOT_CONTEXT, parent))
  }

  #watchConnections (): () => void {
    const key = (m: ConnectMessage): string => `${m.connectParams.protocol}//${m.connectParams.host}`
    const begin = (message: unknown): void => {
      const m = message as ConnectMessage
      if (this.#dialing === undefined) return
      const span = this.#dialing.child('upstream connect', true)
      span.set('server.address', m.connectParams.hostname)
      span.set('server.port', Number(m.connectParams.port) || (m.connectParams.protocol === 'https:' ? 443 : 80))
      const k = key(m)
      const list = this.#connecting.get(k)
      if (list === undefined) this.#connecting.set(k, [span])
      else list.push(span)
    }
    const done = (message: unknown): void => {
      const m = message as ConnectMessage
      const list = this.#connecting.get(key(m))
      const span = list?.shift()
      if (list?.length === 0) this.#connecting.delete(key(m))
      if (span === undefined) return
      if (m.error !== undefined) span.fail(m.error.code ?? 'connect_error')
      span.end()
    }
    const channels: Array<[string, (message: unknown) => void]> = [
      ['undici:client:beforeConnect', begin], ['undici:client:connected', done], ['undici:client:connectError', done],
    ]
    for (const [name, fn] of channels) subscribe(name, fn)
    return () => { for (const [name, fn] of channels) unsubscribe(name, fn) }
  }
}

/** A sampled span: exported when it ends. */
class RecordedSpan implements Span {
  readonly traceId: string
  readonly #tracing: OtelTracing
  readonly #span: OtelSpan

  constructor (tracing: OtelTracing, span: OtelSpan) {
    this.#tracing = tracing
    this.#span = span
    this.traceId = span.spanContext().traceId
  }

  child (name: string, client = false): Span {
    return this.#tracing.childOf(this.#span, name, client)
  }

  set (key: string, value: SpanValue): void {
    this.#span.setAttribute(key, value)
  }

  rename (name: string): void {
    this.#span.updateName(name)
  }

  fail (code: string): void {
    this.#span.setAttribute('error.type', code)
    this.#span.setStatus({ code: SpanStatusCode.ERROR, message: code })
  }

  end (): void {
    this.#span.end()
  }

  traceparent (): string | undefined {
    return traceparentOf(this.#span)
  }
}

/**
 * A span the sampler dropped: nothing is recorded under it, but the trace goes on upstream (flags 00), so a
 * sampled parent further up still joins the upstream's own spans.
 */
class UnsampledSpan implements Span {
  readonly traceId = undefined
  readonly #header: string

  constructor (span: OtelSpan) {
    this.#header = traceparentOf(span)
  }

  child (): Span { return this }
  set (): void {}
  rename (): void {}
  fail (): void {}
  end (): void {}
  traceparent (): string { return this.#header }
}

function traceparentOf (span: OtelSpan): string {
  const { traceId, spanId, traceFlags } = span.spanContext()
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`
}
