import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { FleetCommand } from '../audit/events.js'
import { FLEET_APPLY_BUCKETS } from './series.js'
import type { FleetConnectionSource } from './sources.js'

const FLEET_ACTIONS: ReadonlySet<string> = new Set(['lock', 'unlock', 'revoke', 'rotate'])

/**
 * The fleet series (only sidecars with a `fleet:` section have them, so the disconnection alert never fires for
 * the others): sidekey_fleet_connected (read at scrape time), sidekey_fleet_commands_total{action,result} and
 * sidekey_fleet_apply_seconds (fed by `fleet.command` events).
 */
export class FleetMetrics {
  readonly #commands: Counter<'action' | 'result'>
  readonly #apply: Histogram

  constructor (registry: Registry, source: FleetConnectionSource) {
    const registers = [registry]
    new Gauge({
      name: 'sidekey_fleet_connected',
      help: '1 while this sidecar is connected to the fleet broker, else 0',
      registers,
      collect () { this.set(source.connected ? 1 : 0) },
    })
    new Gauge({
      name: 'sidekey_fleet_watching',
      help: '1 while fleet commands reach this sidecar (every stored one applied, new ones arriving), else 0',
      registers,
      collect () { this.set(source.watching === true ? 1 : 0) },
    })
    this.#commands = new Counter({
      name: 'sidekey_fleet_commands_total',
      help: 'Fleet commands seen, by action and result (applied, failed, rejected, not_addressed)',
      labelNames: ['action', 'result'],
      registers,
    })
    this.#apply = new Histogram({
      name: 'sidekey_fleet_apply_seconds',
      help: 'Seconds from a fleet command being signed to applied here',
      buckets: [...FLEET_APPLY_BUCKETS],
      registers,
    })
  }

  observe (event: FleetCommand): void {
    // A rejected command's action is unverified text: only the four actions become label values.
    const action = event.action !== undefined && FLEET_ACTIONS.has(event.action) ? event.action : 'unknown'
    this.#commands.inc({ action, result: event.result })
    if (event.result === 'applied' && event.lag_ms !== undefined) this.#apply.observe(event.lag_ms / 1000)
  }
}
