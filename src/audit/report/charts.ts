/**
 * The report's charts: inline SVG strings, no script, no library. Every chart is a `<figure data-chart="ID">` so a
 * browser test can find it; every text from the trail goes through `html()`. Sizes are fixed (viewBox), so the
 * page's size does not grow with the number of events, only with the number of bins and series.
 */

const W = 720
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#637939']

export function html (s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

export const color = (i: number): string => PALETTE[i % PALETTE.length]!

function figure (id: string, title: string, svg: string, note = ''): string {
  return `<figure class="chart" data-chart="${html(id)}"><figcaption>${html(title)}</figcaption>${svg}${note === '' ? '' : `<p class="note">${html(note)}</p>`}</figure>\n`
}

function svgOpen (height: number, label: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img" aria-label="${html(label)}">`
}

const fmt = (n: number): string => n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${Math.round(n / 1e3)}k` : String(n)

/** Horizontal bars, one per item, largest first as given. */
export function barChart (id: string, title: string, items: ReadonlyArray<{ label: string, value: number, color?: string }>): string {
  const row = 20
  const left = 200
  const h = Math.max(1, items.length) * row + 10
  const max = Math.max(1, ...items.map((i) => i.value))
  const bars = items.map((it, i) => {
    const w = Math.max(1, Math.round((W - left - 70) * it.value / max))
    const y = 5 + i * row
    return `<text x="${left - 6}" y="${y + 14}" text-anchor="end">${html(it.label.slice(0, 40))}</text>` +
      `<rect x="${left}" y="${y + 2}" width="${w}" height="${row - 6}" fill="${it.color ?? color(i)}"><title>${html(it.label)}: ${it.value}</title></rect>` +
      `<text x="${left + w + 4}" y="${y + 14}">${fmt(it.value)}</text>`
  }).join('')
  return figure(id, title, svgOpen(h, title) + (items.length === 0 ? '<text x="10" y="14">no data</text>' : bars) + '</svg>')
}

/** Vertical bars over labelled bins (a distribution), with optional markers (p50, p90) at bin positions. */
export function histogram (id: string, title: string, bins: ReadonlyArray<{ label: string, count: number }>, note = ''): string {
  const h = 170
  const bottom = 130
  const left = 50
  const bw = (W - left - 10) / Math.max(1, bins.length)
  const max = Math.max(1, ...bins.map((b) => b.count))
  const bars = bins.map((b, i) => {
    const bh = Math.round((bottom - 10) * b.count / max)
    const x = left + i * bw
    return `<rect x="${x.toFixed(1)}" y="${bottom - bh}" width="${(bw - 2).toFixed(1)}" height="${bh}" fill="${color(0)}"><title>${html(b.label)}: ${b.count}</title></rect>` +
      `<text x="${(x + bw / 2).toFixed(1)}" y="${bottom + 14}" text-anchor="middle" class="tick">${html(b.label)}</text>`
  }).join('')
  const axis = `<line x1="${left}" y1="${bottom}" x2="${W - 10}" y2="${bottom}" stroke="#999"/><text x="${left - 6}" y="18" text-anchor="end" class="tick">${fmt(max)}</text>`
  return figure(id, title, svgOpen(h, title) + axis + bars + '</svg>', note)
}

export interface Series { name: string, values: readonly number[] }

/** Lines over time bins (`start` ms, `width` ms per bin); a legend names each series. */
export function timeSeries (id: string, title: string, start: number, width: number, series: readonly Series[], kind: 'line' | 'dots' = 'line'): string {
  const bottom = 170
  const left = 50
  const n = Math.max(1, ...series.map((s) => s.values.length))
  const max = Math.max(1, ...series.flatMap((s) => s.values))
  const x = (i: number): number => left + (W - left - 10) * (n === 1 ? 0.5 : i / (n - 1))
  const y = (v: number): number => bottom - (bottom - 20) * v / max
  const marks = series.map((s, si) => {
    if (kind === 'dots') {
      const row = 30 + si * 18
      return s.values.map((v, i) => v === 0 ? '' : `<circle cx="${x(i).toFixed(1)}" cy="${row}" r="${Math.min(7, 2 + Math.log2(1 + v)).toFixed(1)}" fill="${color(si)}"><title>${html(s.name)} ${iso(start + i * width)}: ${v}</title></circle>`).join('') +
        `<text x="${left - 6}" y="${row + 4}" text-anchor="end" class="tick">${html(s.name.slice(0, 8))}</text>`
    }
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')
    return `<polyline fill="none" stroke="${color(si)}" stroke-width="1.5" points="${pts}"><title>${html(s.name)}</title></polyline>`
  }).join('')
  const rows = kind === 'dots' ? series.length : 0
  const height = Math.max(bottom, 30 + rows * 18) + 30
  const axisY = kind === 'dots' ? height - 30 : bottom
  const axis = `<line x1="${left}" y1="${axisY}" x2="${W - 10}" y2="${axisY}" stroke="#999"/>` +
    `<text x="${left}" y="${axisY + 14}" class="tick">${iso(start)}</text><text x="${W - 10}" y="${axisY + 14}" text-anchor="end" class="tick">${iso(start + n * width)}</text>` +
    (kind === 'line' ? `<text x="${left - 6}" y="24" text-anchor="end" class="tick">${fmt(max)}</text>` : '')
  const legend = `<div class="legend">${series.map((s, i) => `<span><i style="background:${color(i)}"></i>${html(s.name)}</span>`).join('')}</div>`
  const body = series.length === 0 ? '<text x="10" y="14">no data</text>' : marks
  return figure(id, title, svgOpen(height, title) + axis + body + '</svg>' + legend, `bin ${duration(width)}`)
}

const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 16).replace('T', ' ')

export function duration (ms: number): string {
  const s = ms / 1000
  if (s < 60) return `${Math.round(s)}s`
  if (s < 3600) return `${Math.round(s / 60)}m`
  if (s < 86400) return `${+(s / 3600).toFixed(1)}h`
  return `${+(s / 86400).toFixed(1)}d`
}
