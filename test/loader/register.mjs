// Registered after tap's own loaders (package.json "tap" node-arg), so these hooks run before ts-node's.
import { register } from 'node:module'

register('./ts-cache.mjs', import.meta.url)
