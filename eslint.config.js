// neostandard (undici's and fastify's choice) with its TypeScript rules, over the project's own sources.
import neostandard from 'neostandard'

export default neostandard({
  ts: true,
  ignores: ['dist/**', 'build/**', 'coverage/**', '.tap/**', 'node_modules/**', 'test/fixtures/**/*.js'],
})
