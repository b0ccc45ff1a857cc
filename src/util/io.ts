/**
 * What a CLI verb reads and writes: the process's streams and environment, or a test's. A verb that needs less
 * takes a Pick of it, so a test hands it only what it uses.
 */
export interface Io {
  readonly stdin: NodeJS.ReadableStream
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
  readonly env: NodeJS.ProcessEnv
}
