/**
 * The name in `names` closest to a mistyped `word`, if one is close enough to be what was meant: at most one edit
 * (a letter added, dropped, changed, or two swapped) per three letters of the name, and at least one.
 */
export function nearest (word: string, names: readonly string[]): string | undefined {
  let best: { name: string, distance: number } | undefined
  for (const name of names) {
    const distance = editDistance(word.toLowerCase(), name)
    if (distance <= Math.max(1, Math.floor(name.length / 3)) && (best === undefined || distance < best.distance)) {
      best = { name, distance }
    }
  }
  return best?.name
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps, each one edit. */
function editDistance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}
