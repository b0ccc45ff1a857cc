// tldts's Public Suffix List trie (its dist/types has these declarations, but not beside the CommonJS file that
// Node and the bundler load): see public-suffix.ts.
declare module 'tldts/dist/cjs/src/data/trie.js' {
  export const nodeFlags: Uint8Array
  export const edgeStart: Uint16Array
  export const edgeLength: Uint8Array
  export const edgeChild: Uint16Array
  export const labelText: string
  export const rulesRoot: number
}
