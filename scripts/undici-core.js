// What the bundle takes of undici: the Agent and Dispatcher sidekey builds on, with the request/stream/upgrade
// API undici's own index.js attaches to Dispatcher.prototype. The index also evaluates fetch, WebSocket, cookies,
// mocks and caches, which sidekey never uses: about 60 ms of start and 8 MB of RSS (docs/performance.md).
// A name sidekey imports from 'undici' that is not exported here fails the bundle at build time.
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js'
import Agent from 'undici/lib/dispatcher/agent.js'
import api from 'undici/lib/api/index.js'

Object.assign(Dispatcher.prototype, api)

export { Agent, Dispatcher }
