/** A hand-written SVG line chart (no dependencies): linear x, linear or log10 y, legend. */

export interface Series {
  name: string;
  points: [number, number][];
  color: string;
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const fmt = (v: number) => Number(v.toPrecision(6)).toString();

export function lineChartSvg(series: readonly Series[], o: ChartOptions): string {
  const W = o.width ?? 780, H = o.height ?? 460;
  const pad = { l: 70, r: 200, t: 40, b: 50 };
  const pw = W - pad.l - pad.r, ph = H - pad.t - pad.b;
  const ty = (y: number) => o.logY ? Math.log10(Math.max(y, 1e-300)) : y;
  const pts = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(ty(y)));
  const xMin = Math.min(...pts.map((p) => p[0])), xMax = Math.max(...pts.map((p) => p[0]));
  let yMin = Math.min(...pts.map((p) => ty(p[1]))), yMax = Math.max(...pts.map((p) => ty(p[1])));
  if (o.logY) {
    yMin = Math.floor(yMin);
    yMax = Math.ceil(yMax);
  }
  if (yMax === yMin) yMax = yMin + 1;
  const X = (x: number) => pad.l + ((x - xMin) / (xMax - xMin || 1)) * pw;
  const Y = (y: number) => pad.t + (1 - (ty(y) - yMin) / (yMax - yMin)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${pad.l + pw / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ];
  // Grid and y ticks: decades on a log axis, 5 steps otherwise.
  const yTicks = o.logY
    ? Array.from({ length: yMax - yMin + 1 }, (_, i) => yMin + i)
    : Array.from({ length: 6 }, (_, i) => yMin + (i * (yMax - yMin)) / 5);
  for (const t of yTicks) {
    const y = pad.t + (1 - (t - yMin) / (yMax - yMin)) * ph;
    out.push(`<line x1="${pad.l}" x2="${pad.l + pw}" y1="${fmt(y)}" y2="${fmt(y)}" stroke="#e4e4e4"/>`);
    const label = o.logY ? `1e${t}` : fmt(t);
    out.push(`<text x="${pad.l - 6}" y="${fmt(y + 4)}" text-anchor="end">${label}</text>`);
  }
  for (let i = 0; i <= 6; i++) {
    const xv = xMin + (i * (xMax - xMin)) / 6, x = X(xv);
    out.push(`<line x1="${fmt(x)}" x2="${fmt(x)}" y1="${pad.t}" y2="${pad.t + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${fmt(x)}" y="${pad.t + ph + 18}" text-anchor="middle">${fmt(Math.round(xv))}</text>`);
  }
  out.push(`<rect x="${pad.l}" y="${pad.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${pad.l + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(
    `<text x="18" y="${pad.t + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${pad.t + ph / 2})">${
      esc(o.yLabel)
    }</text>`,
  );
  series.forEach((s, i) => {
    const d = s.points.filter(([, y]) => Number.isFinite(ty(y))).map(([x, y], j) =>
      `${j ? "L" : "M"}${fmt(X(x))},${fmt(Y(y))}`
    ).join("");
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${dash}/>`);
    const ly = pad.t + 14 + i * 20, lx = pad.l + pw + 14;
    out.push(
      `<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`,
    );
    out.push(`<text x="${lx + 32}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
