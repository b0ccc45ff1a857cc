import t from 'tap'
import { nearest } from '../../src/commands/nearest.js'

const VERBS = ['run', 'check', 'ca', 'audit', 'schema', 'fleet', 'admin', 'approvals']

t.test('a typo finds the verb meant: a swap, a letter dropped, added or changed', async (t) => {
  t.equal(nearest('chekc', VERBS), 'check', 'two letters swapped is one edit')
  t.equal(nearest('chck', VERBS), 'check')
  t.equal(nearest('auditt', VERBS), 'audit')
  t.equal(nearest('schena', VERBS), 'schema')
  t.equal(nearest('aprovels', VERBS), 'approvals', 'two edits in a nine-letter name')
  t.equal(nearest('CHECK', VERBS), 'check', 'case does not count')
})

t.test('nothing close: no guess, rather than a wrong one', async (t) => {
  t.equal(nearest('deploy', VERBS), undefined)
  t.equal(nearest('xyz', VERBS), undefined, 'one edit per three letters: three from "run" is too far')
  t.equal(nearest('chex', VERBS), undefined, 'two edits in a five-letter name is too far')
})
