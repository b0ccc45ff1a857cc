import * as z from 'zod'
import { formatDuration, parseDuration } from '../util/duration.js'
import { anomalyConfig } from '../anomaly/config.js'

/**
 * The one config schema: unknown keys are rejected (strictObject), defaults are filled here and nowhere else.
 * Durations are written `10s` / `5m` / `24h` and become milliseconds.
 * Checks across sections (issuer references, duplicate hosts, resolve: pins, ...) live in cross-check.ts, run by
 * load.ts, which knows YAML positions; a rule within one object (local_jwt rotation) is a refinement here.
 */

const duration = (def: string) => z.union([z.string(), z.number()])
  .default(def)
  .transform((v, ctx) => {
    const ms = parseDuration(v)
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)} (use e.g. 500ms, 10s, 5m, 24h)` })
      return z.NEVER
    }
    return ms
  })

/** `HOST:PORT`, `[v6]:PORT`; port 0 picks a free one. */
// abort: a value that is not HOST:PORT at all gets that one message, not also a complaint about its port.
export const hostPort = z.string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { message: 'expected HOST:PORT', abort: true })
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535')

const port = z.number().int().min(1).max(65535)
const nonEmpty = z.string().min(1)

const limits = z.strictObject({
  max_header_bytes: z.number().int().min(1024).default(16384),
  max_headers: z.number().int().min(8).default(100),
  headers_timeout: duration('10s'),
  request_timeout: duration('300s'),
  idle_timeout: duration('300s'),
  keep_alive_timeout: duration('60s'),
  connect_timeout: duration('5s'),
  tls_handshake_timeout: duration('10s'),
  max_connections: z.number().int().min(1).default(256),
  max_connection_lifetime: duration('1h'),
  max_requests_per_socket: z.number().int().min(0).default(1000),
  upstream_connections: z.number().int().min(1).default(64),
  upstream_pending: z.number().int().min(0).default(128),
  replay_body_bytes: z.number().int().min(0).default(1_048_576),
  max_response_header_bytes: z.number().int().min(1024).default(32768),
}).prefault({})

const egress = z.strictObject({
  /**
   * `deny`: 403. `tunnel`: passed through blind. `inventory`: TLS intercepted and passed through with the agent's own
   * headers, each call audited as `egress.inventory` (where a credential was carried, never its value).
   */
  unmatched: z.enum(['deny', 'tunnel', 'inventory']).default('deny'),
  block_private: z.boolean().default(true),
  /** CONNECT ports allowed for `tunnel` egress, besides the ports tools name. */
  connect_ports: z.array(port).default([443]),
}).prefault({})

const clientAuth = {
  client_id: nonEmpty.optional(),
  client_secret: nonEmpty.optional(),
  client_secret_file: nonEmpty.optional(),
  private_key_file: nonEmpty.optional(),
  auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'])
    .default('client_secret_basic'),
  timeout: duration('10s'),
  /** RFC 9449: prove possession of an in-memory ES256 key on each token request and call, so tokens are bound to it. */
  dpop: z.boolean().default(false),
  /** Extra form parameters sent with every token request. */
  params: z.record(z.string(), z.string()).default({}),
}

export const localJwtIssuer = z.strictObject({
  type: z.literal('local_jwt'),
  alg: z.enum(['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA']).default('ES256'),
  ttl: duration('10m'),
  rotate_every: duration('24h'),
  overlap: duration('1h'),
  issuer: nonEmpty.default('https://sidekey.local'),
}).superRefine((c, ctx) => {
  // A retired key stays published for max(overlap, ttl) (credentials/issuers/local-jwt.ts); rotating faster than
  // that would publish three keys and more, where the JWKS promises the current and the previous one.
  if (c.rotate_every >= c.ttl && c.rotate_every >= c.overlap) return
  ctx.addIssue({
    code: 'custom',
    path: ['rotate_every'],
    message: `rotate_every (${formatDuration(c.rotate_every)}) must be at least ttl (${formatDuration(c.ttl)}) ` +
      `and overlap (${formatDuration(c.overlap)}), ` +
      'so that the JWKS holds only the current and the previous key and every token it signed still verifies',
  })
})

/**
 * Instead of `token_url`: the protected resource (a remote MCP server's canonical URI). Its RFC 9728 metadata names
 * the authorization server, whose RFC 8414 metadata names the token endpoint (credentials/issuers/discovery.ts);
 * every token request carries it as RFC 8707 `resource`.
 */
const discovered = {
  token_url: z.url({ protocol: /^https?$/ }).optional(),
  resource: z.url({ protocol: /^https?$/ })
    .refine((v) => !v.includes('#'), 'a resource URI has no fragment (RFC 8707)').optional(),
  /** With `resource`: the issuer to use among the resource's `authorization_servers` (the first one otherwise). */
  authorization_server: z.url({ protocol: /^https?$/ }).optional(),
  /** Scopes an upstream's 403 `insufficient_scope` may ask for on top of a tool's own (step-up); none by default. */
  step_up_scopes: z.array(nonEmpty).optional(),
}

/** Exactly one of token_url and resource; authorization_server only with resource. */
function oneTokenSource (
  c: { token_url?: string | undefined, resource?: string | undefined, authorization_server?: string | undefined },
  ctx: z.RefinementCtx
): void {
  if (c.token_url !== undefined && c.resource !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['resource'], message: 'give token_url or resource (discovered), not both' })
  } else if (c.token_url === undefined && c.resource === undefined) {
    const message = 'needs token_url, or resource to discover the token endpoint from'
    ctx.addIssue({ code: 'custom', path: [], message })
  } else if (c.token_url !== undefined && c.authorization_server !== undefined) {
    const message = 'authorization_server applies with resource only'
    ctx.addIssue({ code: 'custom', path: ['authorization_server'], message })
  }
}

export const clientCredentialsIssuer = z.strictObject({
  type: z.literal('oauth2_client_credentials'),
  ...discovered,
  ...clientAuth,
  client_id: nonEmpty,
  /** RFC 7009 token revocation endpoint: dropped tokens (fleet revoke) are revoked there too. */
  revocation_url: z.url({ protocol: /^https?$/ }).optional(),
  /** How the tool's audience is sent: RFC 8707 `resource`, Auth0-style `audience`, both, or none. */
  audience_param: z.enum(['resource', 'audience', 'both', 'none']).default('resource'),
}).superRefine(oneTokenSource)

export const tokenExchangeIssuer = z.strictObject({
  type: z.literal('oauth2_token_exchange'),
  ...discovered,
  ...clientAuth,
  auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']).default('none'),
  revocation_url: z.url({ protocol: /^https?$/ }).optional(),
  subject_token_file: nonEmpty,
  subject_token_type: nonEmpty.default('urn:ietf:params:oauth:token-type:jwt'),
  actor_token_file: nonEmpty.optional(),
  actor_token_type: nonEmpty.default('urn:ietf:params:oauth:token-type:jwt'),
  requested_token_type: nonEmpty.default('urn:ietf:params:oauth:token-type:access_token'),
  audience_param: z.enum(['resource', 'audience', 'both', 'none']).default('audience'),
}).superRefine(oneTokenSource)

export const fileIssuer = z.strictObject({
  type: z.literal('file'),
  path: nonEmpty,
  /** When the file is JSON, the field holding the token. */
  json_field: nonEmpty.optional(),
})

export const execIssuer = z.strictObject({
  type: z.literal('exec'),
  command: z.array(nonEmpty).min(1),
  timeout: duration('10s'),
  env: z.record(z.string(), z.string()).default({}),
})

export const issuer = z.discriminatedUnion('type', [
  localJwtIssuer, clientCredentialsIssuer, tokenExchangeIssuer, fileIssuer, execIssuer,
])

const inject = z.strictObject({
  header: nonEmpty.optional(),
  format: nonEmpty.optional(),
  query: nonEmpty.optional(),
  basic: z.strictObject({ username: z.string() }).optional(),
  /** Re-sign the agent's AWS Signature V4 with the real key set (a file or exec issuer in credential_process JSON). */
  aws_sigv4: z.strictObject({
    service: z.string().regex(/^[a-z0-9-]+$/, 'an AWS signing name such as s3, execute-api, bedrock'),
    region: z.string().regex(/^[a-z0-9-]+$/, 'an AWS region such as us-east-1'),
  }).optional(),
}).refine((i) => [i.header, i.query, i.basic, i.aws_sigv4].filter((v) => v !== undefined).length === 1,
  'inject needs exactly one of header, query, basic or aws_sigv4')
  .refine((i) => i.format === undefined || i.header !== undefined, 'format applies to inject.header only')
  .refine((i) => i.format === undefined || i.format.includes('{token}'), 'format must contain {token}')

/** One kind of call that waits for approval: HTTP by method and path prefix, MCP by `tools/call` name (`*` globs). */
const approvalRule = z.strictObject({
  methods: z.array(z.string().regex(/^[A-Z]+$/, 'methods are upper-case tokens like POST')).min(1).optional(),
  path_prefix: z.string().startsWith('/').optional(),
  mcp_tools: z.array(z.string().min(1)).min(1).optional(),
}).refine((r) => r.methods !== undefined || r.path_prefix !== undefined || r.mcp_tools !== undefined,
  'an approve rule names methods, a path_prefix or mcp_tools')

const match = z.strictObject({
  host: nonEmpty,
  port: port.optional(),
  path_prefix: z.string().startsWith('/').optional(),
  methods: z.array(z.string().regex(/^[A-Z]+$/, 'methods are upper-case tokens like GET')).min(1).optional(),
})

/**
 * One budget on a tool (src/budget/): at most `requests` calls, or `tokens` LLM tokens (read from the answers'
 * usage), in any span of `per`, counted per instance, per `X-Sidekey-Task`, or across the fleet.
 */
export const budgetRule = z.strictObject({
  requests: z.number().int().min(1).optional(),
  tokens: z.number().int().min(1).optional(),
  per: duration('1h').refine((ms) => ms >= 1000, 'per must be at least 1s'),
  by: z.enum(['instance', 'task', 'fleet']).default('instance'),
  /** by: fleet only: with the broker unreachable, refuse (deny) or spend this instance's share of it (local). */
  on_broker_loss: z.enum(['deny', 'local']).default('deny'),
}).refine((b) => (b.requests === undefined) !== (b.tokens === undefined),
  'a budget sets exactly one of requests, tokens')

export const tool = z.strictObject({
  match,
  issuer: nonEmpty,
  scopes: z.array(nonEmpty).default([]),
  audience: nonEmpty.optional(),
  inject: inject.default({ header: 'Authorization', format: 'Bearer {token}' }),
  strip: z.array(nonEmpty).optional(),
  placeholder: z.string().optional(),
  /** Refuse (403 placeholder_required) a call that does not carry `placeholder` where the credential goes. */
  require_placeholder: z.boolean().default(false),
  refresh: z.strictObject({
    at: z.number().gt(0).lt(1).default(0.5),
    jitter: z.number().min(0).lt(1).default(0.1),
    /** After this many calls on one credential a refresh starts in the background (the old one serves meanwhile). */
    max_uses: z.number().int().min(1).optional(),
  }).prefault({}),
  plaintext: z.boolean().default(false),
  /**
   * Where matched traffic is dialled instead of match.host and port (a stand-in, an egress gateway): the match,
   * credential and audit stay the tool's. `http` is a downgrade: cross-check.ts allows it as it allows `plaintext`.
   */
  upstream: z.strictObject({
    host: nonEmpty,
    scheme: z.enum(['https', 'http']).default('https'),
    /** The scheme's default (443, 80) when absent, as in a URL. */
    port: port.optional(),
    /** The TLS server name sent and verified in the certificate; the upstream host by default. */
    tls_server_name: nonEmpty.optional(),
  }).refine((u) => u.scheme === 'https' || u.tls_server_name === undefined,
    'tls_server_name applies to scheme https only')
    .optional(),
  /**
   * local_jwt only: a fresh token for every call, bound to it (htm, htu, jti, task), living `ttl` (60 s).
   * `true` is `{ ttl: 60s }`.
   */
  per_call: z.union([z.boolean(), z.strictObject({ ttl: duration('60s') })])
    .transform((v) => v === true ? { ttl: 60_000 } : v === false ? undefined : v).optional(),
  /** Negotiate HTTP/2 with this tool's upstream when it offers h2 in ALPN. */
  http2: z.boolean().default(true),
  /**
   * Replace the credential in response bodies too (headers always are). On by default for every injection kind
   * (filled by the loader): an httpbin-style endpoint echoes a bearer token as readily as a query key. `false`
   * saves its cost; the first 64 KiB of each body are then still searched, to audit an echo.
   */
  scrub_body: z.boolean().optional(),
  /** Forward X-HTTP-Method-Override and its kin (checked against `match.methods`); stripped otherwise. */
  allow_method_override: z.boolean().default(false),
  /**
   * An MCP server (Streamable HTTP) behind this tool: the MCP tools, resources and prompts this credential may
   * reach, as names or `*` globs (src/mcp/). `tools` is required; an absent `resources` or `prompts` allows all.
   */
  mcp: z.strictObject({
    tools: z.array(z.string()),
    resources: z.array(z.string()).optional(),
    prompts: z.array(z.string()).optional(),
  }).optional(),
  /**
   * Calls a human (or an operator's signed command) approves, each exactly, before the credential goes on
   * (src/approvals/).
   */
  approve: z.array(approvalRule).min(1).optional(),
  /** How long a held call waits; how long an approval given after it timed out lets the identical call through once. */
  approval: z.strictObject({
    timeout: duration('2m'),
    valid_for: duration('15m'),
    /** Receives each `approval.requested` as JSON (POST): https, or http to a loopback or pinned host. */
    webhook: z.url({ protocol: /^https?$/ }).optional(),
  }).optional(),
  /**
   * Accept `%2F` / `%5C` in this tool's paths (APIs such as GitLab's `projects/group%2Fname`); refused (400) otherwise.
   */
  allow_encoded_slash: z.boolean().default(false),
  /** Calls and LLM tokens this tool may spend per window: a runaway agent is refused (429) past them. */
  budget: z.array(budgetRule).optional(),
})

export const anomaly = anomalyConfig

/**
 * HTTP/2 from agents inside intercepted TLS tunnels (ALPN h2), with Envoy's edge limits (threat model: the agent,
 * exhaustion). The upstream leg has its own per-tool switch, `tools.NAME.http2`.
 */
const http2 = z.strictObject({
  enabled: z.boolean().default(true),
  max_concurrent_streams: z.number().int().min(1).max(1000).default(100),
  initial_stream_window: z.number().int().min(65_535).max(16_777_216).default(65_536),
  connection_window: z.number().int().min(65_535).max(2_147_483_647).default(1_048_576),
  /** A session is closed once this many streams were reset by the agent early and they are half its streams or more. */
  max_premature_resets: z.number().int().min(1).default(100),
}).prefault({})

/**
 * OpenTelemetry traces over OTLP/HTTP (src/tracing/): optional; without it no @opentelemetry module is loaded.
 * Read at start only, like `fleet:`.
 */
export const tracing = z.strictObject({
  /** The collector's OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`. */
  endpoint: z.url({ protocol: /^https?$/ }),
  /** The share of traces recorded when the agent sent no sampled parent (a sampled parent is always followed). */
  ratio: z.number().min(0).max(1).default(0.01),
  service_name: nonEmpty.default('sidekey'),
  /** Spans waiting for export; past this many, new spans are dropped rather than held. */
  max_queue: z.number().int().min(1).max(100_000).default(2048),
  /** How long spans wait before a batch is sent. */
  delay: duration('5s'),
  export_timeout: duration('10s'),
})

/**
 * Fleet control over NATS JetStream (src/fleet/): optional; without it no broker is contacted and the NATS client
 * is never loaded. Read at start only: a reload keeps the fleet connection of the start-up config.
 */
export const fleet = z.strictObject({
  nats: z.strictObject({
    servers: z.array(nonEmpty).min(1),
    token_file: nonEmpty.optional(),
    user: nonEmpty.optional(),
    password_file: nonEmpty.optional(),
    /** A NATS JWT + nkey seed file (`nsc` writes these). */
    creds_file: nonEmpty.optional(),
    tls: z.strictObject({
      ca_file: nonEmpty.optional(),
      cert_file: nonEmpty.optional(),
      key_file: nonEmpty.optional(),
    }).refine((t) => (t.cert_file === undefined) === (t.key_file === undefined),
      'tls.cert_file and tls.key_file go together').optional(),
  }).refine((n) => [n.token_file, n.user ?? n.password_file, n.creds_file].filter((v) => v !== undefined).length <= 1,
    'nats takes one of token_file, user + password_file, creds_file')
    .refine((n) => (n.user === undefined) === (n.password_file === undefined),
      'nats.user and nats.password_file go together'),
  /** The JetStream key-value bucket holding the fleet state (created when missing). */
  bucket: z.string().regex(/^[A-Za-z0-9_-]+$/, 'bucket names use letters, digits, _ and -').default('sidekey'),
  /** Public keys allowed to sign commands: a JWKS file or a PEM public key. */
  operator_keys: nonEmpty,
  /** true: /readyz answers 503 until the fleet state has been read once. */
  required: z.boolean().default(false),
  /** Where the applied lock commands are cached, so a restart refuses a locked tool before the broker answers. */
  state_file: nonEmpty.optional(),
  heartbeat: duration('10s'),
})

export const config = z.strictObject({
  instance_id: nonEmpty,
  listen: hostPort.default('127.0.0.1:4750'),
  admin: z.strictObject({
    listen: hostPort.default('127.0.0.1:4751'),
    token_file: nonEmpty.optional(),
  }).prefault({}),
  ca: z.strictObject({
    dir: nonEmpty.default('./data/ca'),
    validity: duration('30d'),
    leaf_validity: duration('7d'),
    /** Constrain the CA (RFC 5280 nameConstraints) to the tool hosts. */
    name_constraints: z.boolean().default(true),
    leaf_cache_size: z.number().int().min(1).default(1000),
  }).prefault({}),
  upstream_ca_file: nonEmpty.optional(),
  resolve: z.record(z.string(), z.string()).default({}),
  limits,
  http2,
  egress,
  audit: z.strictObject({
    /**
     * A signed audit.checkpoint after this many log lines or this long (when a line was written since), and at
     * shutdown.
     */
    checkpoint_every: z.strictObject({
      events: z.number().int().min(1).default(1000),
      interval: duration('60s').refine((ms) => ms >= 1000, 'interval must be at least 1s'),
    }).prefault({}),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  }).prefault({}),
  shutdown_grace: duration('10s'),
  anomaly,
  fleet: fleet.optional(),
  tracing: tracing.optional(),
  issuers: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'issuer names use letters, digits, _ . -'), issuer),
  tools: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'tool names use letters, digits, _ . -'), tool),
})

/**
 * What the operator's `sidekey fleet` verbs read: `fleet:` only. A sidecar's own config works too; its other
 * sections are accepted unread (a broken tool must not stop an emergency lock), an unknown top-level key is refused.
 */
export const operatorConfig = z.strictObject({
  fleet,
  ...Object.fromEntries(Object.keys(config.shape).filter((k) => k !== 'fleet').map((k) => [k, z.unknown().optional()])),
})

export type Config = z.output<typeof config>
export type ToolConfig = z.output<typeof tool>
export type IssuerConfig = z.output<typeof issuer>
export type LimitsConfig = Config['limits']
export type LocalJwtIssuerConfig = z.output<typeof localJwtIssuer>
export type ClientCredentialsIssuerConfig = z.output<typeof clientCredentialsIssuer>
export type TokenExchangeIssuerConfig = z.output<typeof tokenExchangeIssuer>
export type FileIssuerConfig = z.output<typeof fileIssuer>
export type ExecIssuerConfig = z.output<typeof execIssuer>
export type FleetConfig = z.output<typeof fleet>
export type TracingConfig = z.output<typeof tracing>
export type OperatorConfig = z.output<typeof operatorConfig>

/**
 * The `strip` default: the placeholder the agent sends sits where the real credential will go (a query parameter
 * is replaced in place, so nothing to strip). The loader fills it in, so the proxy never computes it.
 */
export function defaultStrip (inject: ToolConfig['inject']): string[] {
  if (inject.header !== undefined) return [inject.header]
  if (inject.basic !== undefined) return ['Authorization']
  // The agent's signature over placeholder keys: regenerated (X-Amz-Content-Sha256 stays: it is the payload hash).
  if (inject.aws_sigv4 !== undefined) return ['Authorization', 'X-Amz-Date', 'X-Amz-Security-Token']
  return []
}

/** The `scrub_body` default: on for every injection kind, since any credential can come back in a body. */
export function defaultScrubBody (_inject: ToolConfig['inject']): boolean {
  return true
}
