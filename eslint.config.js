// neostandard (undici's and fastify's choice) with its TypeScript rules, over the project's own sources.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'build/**', 'coverage/**', '.tap/**', 'node_modules/**'],
  }),
  {
    rules: {
      // `void promise` marks a promise deliberately not awaited (typescript-eslint's no-floating-promises asks the
      // same); as an expression it stays refused.
      'no-void': ['error', { allowAsStatement: true }],
      // Audit and config field names are snake_case on the wire (`body_sha256`, `valid_for`): read as they are.
      camelcase: ['error', { properties: 'never', ignoreDestructuring: true }],
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      // `for await (const _ of stream)` drains a stream.
      '@typescript-eslint/no-unused-vars': ['error', { varsIgnorePattern: '^_', argsIgnorePattern: '^_' }],
    },
  },
  {
    // No line of the sources over 120 characters: long strings and comments are wrapped too, nothing is ignored.
    files: ['src/**'],
    rules: { '@stylistic/max-len': ['error', { code: 120 }] },
  },
  {
    // prom-client registers a metric in its constructor; the registry holds it.
    files: ['src/metrics/metrics.ts', 'src/metrics/budget-series.ts', 'src/metrics/fleet-series.ts'],
    rules: { 'no-new': 'off' },
  },
  {
    // Their job is control characters: escaping them in logs, refusing them in paths, finding keys between them.
    files: ['src/credentials/error-text.ts', 'src/net/path.ts', 'src/proxy/scrub/scrub.ts', 'test/audit/*.test.ts'],
    rules: { 'no-control-regex': 'off' },
  },
  {
    // `${VAR}` is the config's own interpolation syntax, written literally in its messages and tests.
    files: ['src/config/**', 'test/config/**'],
    rules: { 'no-template-curly-in-string': 'off' },
  },
  {
    // Test loops stop on a flag another async function sets.
    files: ['test/**'],
    rules: { 'no-unmodified-loop-condition': 'off' },
  },
]
