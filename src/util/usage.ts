/** A verb's usage text: `usage: sidekey FORM`, each further form aligned under the first, then any notes. */
export function usageText (forms: readonly string[], ...notes: string[]): string {
  return [`usage: ${forms.map((f) => `sidekey ${f}`).join('\n       ')}`, ...notes].join('\n')
}
