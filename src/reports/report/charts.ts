/**
 * The report's charts: inline SVG strings, no script, no library. Every chart is a `<figure data-chart="ID">` so a
 * browser test can find it; every text from the trail goes through `html()`. Sizes are fixed (viewBox), so the
 * page's size does not grow with the number of events, only with the number of bins and series.
 */

const W = 720
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
  '#17becf', '#393b79', '#637939']

export function html (s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

export const color = (i: number): string => PALETTE[i % PALETTE.length]!

function figure (id: string, title: string, svg: string, note = ''): string {
  const caption = `<figcaption>${html(title)}</figcaption>`
  const below = note === '' ? '' : `<p class="note">${html(note)}</p>`
  return `<figure class="chart" data-chart="${html(id)}">${caption}${svg}${below}</figure>\n`
}

/** Scales down to the page's width (CSS `svg{max-width:100%;height:auto}`); labelled for screen readers, tooltips. */
function svgOpen (height: number, label: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" ` +
    `role="img" aria-label="${html(label)}">` +
    `<title>${html(label)}</title>`
}

/** A chart with nothing to draw says so, without axes (an empty time axis would start at 1970-01-01). */
function noData (id: string, title: string): string {
  return figure(id, title, svgOpen(24, `${title}: no data`) + '<text x="10" y="16">no data</text></svg>')
}

/** `s` cut to `max` characters, with an ellipsis when cut. */
export const cut = (s: string, max: number): string => s.length > max ? s.slice(0, max - 1) + '…' : s

/** Room for a label column of `chars` characters at `px` pixels a character (11 px sans-serif: about 6.5). */
const labelWidth = (labels: readonly string[], px: number, min: number, max: number): number =>
  Math.min(max, Math.max(min, Math.ceil(Math.max(0, ...labels.map((l) => l.length)) * px) + 12))

/** A timestamp to the second, UTC, as table HTML (kept on one line). */
export const clock = (ms: number): string =>
  Number.isFinite(ms) ? `<time>${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}</time>` : '-'

/**
 * A table whose cells are HTML already escaped by the caller. Each cell names its column (`data-label`), so on a
 * narrow page the page's CSS lays each row out as a card of `column: value` lines instead of a table too wide.
 */
export function dataTable (id: string, head: readonly string[], rows: ReadonlyArray<readonly string[]>, note = '')
  : string {
  const labels = head.map((h) => html(h))
  return `<table data-table="${html(id)}"><tr>${labels.map((h) => `<th>${h}</th>`).join('')}</tr>` +
    rows.map((r) => `<tr>${r.map((c, i) => `<td data-label="${labels[i] ?? ''}">${c}</td>`).join('')}</tr>`).join('') +
    '</table>' +
    (note === '' ? '' : `<p class="note">${html(note)}</p>`)
}

const fmt = (n: number): string =>
  n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${Math.round(n / 1e3)}k` : String(n)

/** Horizontal bars, one per item, largest first as given. */
export function barChart (id: string, title: string,
  items: ReadonlyArray<{ label: string, value: number, color?: string }>): string {
  if (items.length === 0) return noData(id, title)
  const row = 20
  const labels = items.map((it) => cut(it.label, 48))
  const left = labelWidth(labels, 6.5, 60, 330)
  const h = items.length * row + 10
  const max = Math.max(1, ...items.map((i) => i.value))
  const bars = items.map((it, i) => {
    const w = Math.max(1, Math.round((W - left - 50) * it.value / max))
    const y = 5 + i * row
    return `<text x="${left - 6}" y="${y + 14}" text-anchor="end">${html(labels[i]!)}</text>` +
      `<rect x="${left}" y="${y + 2}" width="${w}" height="${row - 6}" fill="${it.color ?? color(i)}">` +
      `<title>${html(it.label)}: ${it.value}</title></rect>` +
      `<text x="${left + w + 4}" y="${y + 14}">${fmt(it.value)}</text>`
  }).join('')
  return figure(id, title, svgOpen(h, title) + bars + '</svg>')
}

/** Vertical bars over labelled bins (a distribution), with optional markers (p50, p90) at bin positions. */
export function histogram (id: string, title: string, bins: ReadonlyArray<{ label: string, count: number }>, note = '')
  : string {
  const h = 170
  const bottom = 130
  const left = 50
  const bw = (W - left - 10) / Math.max(1, bins.length)
  const max = Math.max(1, ...bins.map((b) => b.count))
  const bars = bins.map((b, i) => {
    const bh = Math.round((bottom - 10) * b.count / max)
    const x = left + i * bw
    return `<rect x="${x.toFixed(1)}" y="${bottom - bh}" width="${(bw - 2).toFixed(1)}" height="${bh}" ` +
      `fill="${color(0)}">` +
      `<title>${html(b.label)}: ${b.count}</title></rect>` +
      `<text x="${(x + bw / 2).toFixed(1)}" y="${bottom + 14}" text-anchor="middle" class="tick">` +
      `${html(b.label)}</text>`
  }).join('')
  const axis = `<line x1="${left}" y1="${bottom}" x2="${W - 10}" y2="${bottom}" stroke="#999"/>` +
    `<text x="${left - 6}" y="18" text-anchor="end" class="tick">${fmt(max)}</text>`
  return figure(id, title, svgOpen(h, title) + axis + bars + '</svg>', note)
}

export interface Series { name: string, values: readonly number[] }

/**
 * Lines over time bins (`start` ms, `width` ms per bin), or with `dots` one row of dots per series (each row named
 * at its left, each dot's tooltip naming series, time and count); a legend names each series' colour.
 */
export function timeSeries (id: string, title: string, start: number, width: number, series: readonly Series[],
  kind: 'line' | 'dots' = 'line'): string {
  if (series.length === 0) return noData(id, title)
  const dots = kind === 'dots'
  const names = series.map((s) => cut(s.name, 28))
  const left = dots ? labelWidth(names, 6, 50, 200) : 50
  const bottom = dots ? 20 + series.length * 18 : 170
  const n = Math.max(1, ...series.map((s) => s.values.length))
  const max = Math.max(1, ...series.flatMap((s) => s.values))
  const x = (i: number): number => left + (W - left - 10) * (n === 1 ? 0.5 : i / (n - 1))
  const y = (v: number): number => bottom - (bottom - 20) * v / max
  const marks = series.map((s, si) => {
    if (!dots) {
      const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')
      const line = `<polyline fill="none" stroke="${color(si)}" stroke-width="1.5" points="${pts}">`
      return `${line}<title>${html(s.name)}</title></polyline>`
    }
    const row = 20 + si * 18
    const label = `<text x="${left - 6}" y="${row + 4}" text-anchor="end" class="tick">${html(names[si]!)}</text>`
    return `<g><title>${html(s.name)}</title>${label}</g>` +
      s.values.map((v, i) => v === 0
        ? ''
        : `<circle cx="${x(i).toFixed(1)}" cy="${row}" ` +
        `r="${Math.min(7, 2 + Math.log2(1 + v)).toFixed(1)}" ` +
        `fill="${color(si)}"><title>${html(s.name)} at ${iso(start + i * width)}: ${v}</title></circle>`).join('')
  }).join('')
  const height = bottom + 24
  const axis = `<line x1="${left}" y1="${bottom}" x2="${W - 10}" y2="${bottom}" stroke="#999"/>` +
    `<text x="${left}" y="${bottom + 16}" class="tick">${iso(start)}</text>` +
    `<text x="${W - 10}" y="${bottom + 16}" text-anchor="end" class="tick">${iso(start + n * width)}</text>` +
    (dots ? '' : `<text x="${left - 6}" y="24" text-anchor="end" class="tick">${fmt(max)}</text>`)
  const legend = `<div class="legend">${series.map((s, i) =>
    `<span><i style="background:${color(i)}"></i>${html(s.name)}</span>`).join('')}</div>`
  return figure(id, title, svgOpen(height, title) + axis + marks + '</svg>' + legend, `bin ${duration(width)}`)
}

const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 16).replace('T', ' ')

export function duration (ms: number): string {
  const s = ms / 1000
  if (s < 60) return `${Math.round(s)}s`
  if (s < 3600) return `${Math.round(s / 60)}m`
  if (s < 86400) return `${+(s / 3600).toFixed(1)}h`
  return `${+(s / 86400).toFixed(1)}d`
}
