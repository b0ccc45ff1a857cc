import { spawn, type ChildProcess } from 'node:child_process'
import { basename } from 'node:path'
import type { ExecIssuerConfig } from '../../config/schema.js'
import { IssuerError } from '../../errors.js'
import type { CredentialRequest, Issuer, IssuerFactory } from '../issuer.js'
import { awsKeyCredential, isAwsKeyDocument } from '../aws-keys.js'
import { issuedCredential, jwtFacts, MAX_TOKEN_BYTES, sanitizeForMessage, usableToken } from './token-value.js'
import { errorCode } from '../../errors.js'

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/

/**
 * `exec`: runs `command` without a shell and reads `{"token": "...", "expires_at": "RFC3339"}` or
 * `{"token": "...", "expires_in": SECONDS}` from its stdout (without either, the JWT `exp`, else no expiry).
 * The environment is only PATH, HOME, SIDEKEY_TOOL / SIDEKEY_SCOPES / SIDEKEY_AUDIENCE / SIDEKEY_INSTANCE_ID and
 * `env`. On `timeout` or abort the whole process group is killed with SIGKILL. Errors quote neither stdout nor
 * stderr: a helper's diagnostics may echo the secret it fetched (or the one it used to fetch it), and an error
 * message reaches the audit log and /status. They say how many bytes of stderr there were, so an operator knows
 * to run the command by hand.
 *
 * @example
 *   const issuer = createExecIssuer('helper', { type: 'exec', command: ['/usr/local/bin/get-token', '--tool',
 * 'crm'], timeout: 10_000, env: {} }, deps)
 */
export const createExecIssuer: IssuerFactory<ExecIssuerConfig> = (_name, config, deps): Issuer => {
  const [command, ...args] = config.command as [string, ...string[]]
  const label = `command ${sanitizeForMessage(basename(command), 80)}`
  return {
    type: 'exec',
    async fetch (req) {
      const issuedAt = deps.clock.now()
      const run = await runCommand(command, args, commandEnv(config.env, req), config.timeout, req.signal, label)
      const hint = (): string => run.stderrBytes === 0 ? '' : ` (stderr: ${run.stderrBytes} bytes, not quoted)`
      if (run.exitCode !== 0) {
        const how = run.exitCode === null
          ? `was killed by ${run.exitSignal ?? 'a signal'}`
          : `exited with code ${run.exitCode}`
        throw new IssuerError('SIDEKEY_ISSUER_FAILED', `${label} ${how}${hint()}`)
      }
      let out: unknown
      try {
        out = JSON.parse(run.stdout.toString('utf8'))
      } catch {
        throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${label} printed output that is not JSON${hint()}`)
      }
      if (out === null || typeof out !== 'object' || Array.isArray(out)) {
        throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${label} printed JSON that is not an object`)
      }
      if (isAwsKeyDocument(out)) return awsKeyCredential(out, issuedAt, `the output of ${label}`)
      const { token, expires_at: expiresAtText, expires_in: expiresIn } = out as Record<string, unknown>
      const value = usableToken(token, `the output of ${label}`)
      const facts = jwtFacts(value)
      let expiresAt: number | undefined
      if (expiresAtText !== undefined) {
        const at = typeof expiresAtText === 'string' && RFC3339.test(expiresAtText) ? Date.parse(expiresAtText) : NaN
        if (Number.isNaN(at)) {
          const why = `${label} printed an expires_at that is not an RFC 3339 time`
          throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', why)
        }
        expiresAt = at
      } else if (expiresIn !== undefined) {
        if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
          const why = `${label} printed an expires_in that is not a positive number`
          throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', why)
        }
        expiresAt = issuedAt + expiresIn * 1000
      } else {
        expiresAt = facts?.expiresAt
      }
      if (expiresAt !== undefined && !(expiresAt > issuedAt)) {
        throw new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${label} printed a token that is already expired`)
      }
      return issuedCredential(value, issuedAt, expiresAt, facts)
    },
  }
}

function commandEnv (extra: Readonly<Record<string, string>>, req: CredentialRequest): Record<string, string> {
  const env: Record<string, string> = {}
  for (const key of ['PATH', 'HOME']) {
    const v = process.env[key]
    if (v !== undefined) env[key] = v
  }
  env.SIDEKEY_TOOL = req.tool
  env.SIDEKEY_SCOPES = req.scopes.join(' ')
  env.SIDEKEY_INSTANCE_ID = req.instanceId
  if (req.audience !== undefined) env.SIDEKEY_AUDIENCE = req.audience
  return { ...env, ...extra }
}

interface RunResult {
  readonly stdout: Buffer
  /** Bytes the command wrote to stderr: counted, never kept (see above). */
  readonly stderrBytes: number
  readonly exitCode: number | null
  readonly exitSignal: NodeJS.Signals | null
}

/** One run of the command; rejects (after the process is gone) on spawn failure, timeout, abort or too much output. */
function runCommand (
  command: string, args: string[], env: Record<string, string>, timeoutMs: number, signal: AbortSignal, label: string
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `${label} was not started: the fetch was aborted`))
      return
    }
    let child: ChildProcess
    try {
      // detached: the command leads its own process group, so a timeout can kill everything it started.
      child = spawn(command, args, {
        shell: false,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: process.platform !== 'win32',
        windowsHide: true,
      })
    } catch (err) {
      reject(new IssuerError('SIDEKEY_ISSUER_FAILED', `${label} could not be started (${errorCode(err)})`))
      return
    }
    const stdout: Buffer[] = []
    let stdoutSize = 0
    let stderrBytes = 0
    let failure: IssuerError | undefined
    let settled = false

    const stop = (why: IssuerError): void => {
      failure ??= why
      killTree(child)
      // A grandchild outside the group could keep the pipes open; close() must not wait for it.
      child.stdout?.destroy()
      child.stderr?.destroy()
    }
    // Real timers on purpose: this bounds a real process, whatever clock schedules the refreshes.
    const timer = setTimeout(() => {
      stop(new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `${label} timed out after ${timeoutMs} ms and was killed`))
    }, timeoutMs)
    const onAbort = (): void => {
      stop(new IssuerError('SIDEKEY_ISSUER_TIMEOUT', `${label} was killed: the fetch was aborted`))
    }
    signal.addEventListener('abort', onAbort, { once: true })

    const settle = (result: RunResult | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      if (failure !== undefined || result === undefined) reject(failure)
      else resolve(result)
    }

    child.stdout?.on('data', (chunk: Buffer) => {
      stdoutSize += chunk.length
      if (stdoutSize > MAX_TOKEN_BYTES) {
        stop(new IssuerError('SIDEKEY_ISSUER_RESPONSE', `${label} printed more than ${MAX_TOKEN_BYTES} bytes`))
        return
      }
      stdout.push(chunk)
    })
    child.stderr?.on('data', (chunk: Buffer) => { stderrBytes += chunk.length })
    child.on('error', (err) => {
      failure ??= new IssuerError('SIDEKEY_ISSUER_FAILED', `${label} could not be started (${errorCode(err)})`)
      // Without a pid there is no process whose close would settle the promise.
      if (child.pid === undefined) settle(undefined)
    })
    child.on('close', (exitCode, exitSignal) => {
      settle({ stdout: Buffer.concat(stdout), stderrBytes, exitCode, exitSignal })
    })
  })
}

function killTree (child: ChildProcess): void {
  if (child.pid === undefined) return
  try {
    if (process.platform === 'win32') throw new Error('no process groups')
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    child.kill('SIGKILL')
  }
}
