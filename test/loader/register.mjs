// The tests' TypeScript loader: esbuild's transform (already the bundler) instead of ts-node, which took about
// 3 s of CPU per test process to transpile sidekey's sources again (`npm test` has already type-checked them).
// Registered after tap's own loaders, so these hooks run first.
import { register } from 'node:module'

register('./hooks.mjs', import.meta.url)
