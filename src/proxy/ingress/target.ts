/** Where a request goes, as the agent addressed it (absolute-form URL, or the CONNECT target of its tunnel). */
export interface RequestTarget {
  readonly scheme: 'http' | 'https'
  readonly host: string
  readonly port: number
  /** Origin-form path and query as the agent sent it. */
  readonly pathAndQuery: string
  /** Inside an intercepted CONNECT tunnel. */
  readonly tunnel: boolean
  /** The Host header named another authority than the absolute-form URL (which wins, RFC 9112 §3.2.2); audited. */
  readonly hostMismatch?: boolean
}
