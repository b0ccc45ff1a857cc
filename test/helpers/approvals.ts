import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import { fetch as undiciFetch, ProxyAgent, request } from 'undici'
import { startSidekey, type RunningSidekey } from './sidekey.js'
import { until } from './until.js'
import { readAdminToken } from '../../src/admin/token.js'

/** A pending approval as GET /approvals lists it. */
export interface Pending { id: string, tool: string, state: string, body_sha256: string, preview: string, path: string }

export interface ApprovalsSidekey extends RunningSidekey {
  agent: ProxyAgent
  /** A fetch through sidekey, for SDKs that take one. */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>
  pending: () => Promise<Pending[]>
  /** Waits until a call of `tool` is in `state` (waiting by default), and returns its approval. */
  heldCall: (tool: string, state?: string) => Promise<Pending>
  /** POST /approvals/ID with the admin token; the status. */
  decide: (id: string, decision: 'approve' | 'deny', reason?: string) => Promise<number>
  /** sidekey_approvals_total for the tool and result. */
  counter: (tool: string, result: string) => Promise<number>
}

/** sidekey in-process from a config file whose ca.dir is real: `sidekey approvals --config FILE` finds the token. */
export async function startApprovals (t: Test, file: string): Promise<ApprovalsSidekey> {
  const sk = await startSidekey(t, readFileSync(file, 'utf8'))
  const agent = new ProxyAgent(sk.proxyUrl)
  t.teardown(() => agent.close())
  const authorization = `Bearer ${await readAdminToken(sk.app.config)}`
  const pending = async (): Promise<Pending[]> => {
    const res = await request(`${sk.adminUrl}/approvals`, { headers: { authorization } })
    return ((await res.body.json()) as { approvals: Pending[] }).approvals
  }
  const find = async (tool: string, state: string): Promise<Pending | undefined> =>
    (await pending()).find((a) => a.tool === tool && a.state === state)
  return {
    ...sk,
    agent,
    fetch: (input, init) =>
      undiciFetch(input as string, { ...(init as object), dispatcher: agent }) as unknown as Promise<Response>,
    pending,
    heldCall: async (tool, state = 'waiting') => {
      await until(async () => await find(tool, state) !== undefined, `${tool} ${state}`)
      return (await find(tool, state))!
    },
    decide: async (id, decision, reason) => {
      const res = await request(`${sk.adminUrl}/approvals/${id}`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ decision, ...(reason === undefined ? {} : { reason }) }),
      })
      await res.body.dump()
      return res.statusCode
    },
    counter: async (tool, result) => {
      const prefix = `sidekey_approvals_total{tool="${tool}",result="${result}"}`
      const line = (await sk.app.metrics.text()).split('\n').find((l) => l.startsWith(prefix))
      return Number(line?.split(' ').pop() ?? 0)
    },
  }
}
