/**
 * Reads the LLM token usage out of an answer's bytes as they pass, without holding the body: OpenAI Chat
 * Completions (`usage.total_tokens`, else prompt + completion), the Responses API and Anthropic Messages
 * (`input_tokens` + `output_tokens`), in plain JSON and in SSE streams (OpenAI's final usage chunk, the Responses
 * API's `response.completed`, Anthropic's `message_start` then cumulative `message_delta`). Each field keeps the
 * largest value seen, so a stream's running counts end at their final value and bytes seen twice count once.
 * A key inside a JSON string has its quotes escaped (`\"input_tokens\"`), so text the model wrote cannot pose as
 * usage.
 */
const FIELD = /(?<!\\)"(total|prompt|completion|input|output)_tokens"\s*:\s*(\d{1,15})(?=[^\d])/g

/** Bytes of the previous chunk scanned again with the next, so that a field cut in two is still read. */
const CARRY = 64

/** Bytes per token charged when a successful answer carries no usage: about four characters make a token. */
export const BYTES_PER_TOKEN = 4

export class UsageScanner {
  readonly #seen = new Map<string, number>()
  #carry = ''
  #bytes = 0

  push (chunk: Buffer): void {
    this.#bytes += chunk.length
    // latin1 keeps one character per byte: the keys and digits are ASCII, and a split UTF-8 sequence cannot throw.
    const text = this.#carry + chunk.toString('latin1')
    for (const m of text.matchAll(FIELD)) {
      const value = Number(m[2])
      if (value > (this.#seen.get(m[1]!) ?? -1)) this.#seen.set(m[1]!, value)
    }
    this.#carry = text.slice(-CARRY)
  }

  /** The tokens the answer reported, or undefined when it reported none. */
  reported (): number | undefined {
    const seen = this.#seen
    if (seen.size === 0) return undefined
    const total = seen.get('total')
    if (total !== undefined) return total
    return (seen.get('input') ?? seen.get('prompt') ?? 0) + (seen.get('output') ?? seen.get('completion') ?? 0)
  }

  /**
   * What the answer costs: its reported usage, else (a stream asked without `stream_options.include_usage`, an API
   * that does not report) an estimate from the bytes relayed, so that leaving usage out cannot dodge the budget.
   */
  tokens (): number {
    return this.reported() ?? Math.ceil(this.#bytes / BYTES_PER_TOKEN)
  }
}
