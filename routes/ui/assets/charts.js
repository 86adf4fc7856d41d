// Line charts over uPlot (its own dist file, loaded by the page as the `uPlot` global): one x axis (the
// training step) and named series that gain points as events arrive. The container carries the number of
// points drawn in `data-points` (tests and curious users can read it).

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"];

export class LineChart {
  /**
   * @param {HTMLElement} container
   * @param {{label: string, scale?: string, dash?: boolean}[]} series
   * @param {{y?: string, y2?: string, log?: boolean}} axes labels of the left (scale "y") and right (scale "y2")
   *   axes; `log`: a logarithmic left axis (losses span orders of magnitude)
   */
  constructor(container, series, axes = {}) {
    this.container = container;
    this.series = series;
    this.x = [];
    this.ys = series.map(() => []);
    const uPlot = globalThis.uPlot;
    const opts = {
      width: this.#width(),
      height: 240,
      scales: { x: { time: false }, ...(axes.log ? { y: { distr: 3 } } : {}) },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: "step" },
        ...series.map((s, i) => ({
          label: s.label,
          scale: s.scale ?? "y",
          stroke: COLORS[i % COLORS.length],
          width: 2,
          dash: s.dash ? [6, 4] : undefined,
          spanGaps: true,
          points: { show: true, size: 4 },
        })),
      ],
      axes: [
        { label: "step" },
        { label: axes.y ?? "", scale: "y" },
        ...(axes.y2 ? [{ label: axes.y2, scale: "y2", side: 1, grid: { show: false } }] : []),
      ],
    };
    this.plot = new uPlot(opts, [this.x, ...this.ys], container);
    new ResizeObserver(() => this.plot.setSize({ width: this.#width(), height: 240 })).observe(container);
    this.#count();
  }

  #width() {
    return Math.max(280, this.container.clientWidth || 600);
  }

  /** Adds (or, for a step seen before, completes) the point at `x`; null values leave a series' gap. */
  add(x, values) {
    let i = this.x.indexOf(x);
    if (i < 0) {
      i = this.x.length;
      this.x.push(x);
      this.ys.forEach((y) => y.push(null));
    }
    values.forEach((v, k) => {
      if (v !== null && v !== undefined) this.ys[k][i] = v;
    });
  }

  /** Redraws with the points added since the last call. */
  draw() {
    this.plot.setData([this.x, ...this.ys]);
    this.#count();
  }

  #count() {
    this.container.dataset.points = String(this.x.length);
  }
}
