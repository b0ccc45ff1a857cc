/**
 * Resolves once `check` holds, checking at once and then every few milliseconds; rejects after `ms`, naming `what`
 * (the check's own source when not given). The bound is a safety net, never a timing assertion: use it for any
 * state that changes on another connection's or another process's schedule, instead of a fixed sleep.
 */
export async function until (check: () => boolean | Promise<boolean>, what?: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what ?? String(check)}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
