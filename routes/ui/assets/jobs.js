// Jobs list: every fine-tuning job with its status, refreshed every few seconds.
import { api, badge, boot, el, every, fillTableIfChanged, fmtTime, METHODS, row } from "./app.js";

async function refresh() {
  const { data } = await api("/v1/fine_tuning/jobs?limit=100");
  fillTableIfChanged(
    document.getElementById("jobs"),
    data.map((j) => [j.id, j.status, j.fine_tuned_model]),
    () =>
      data.map((j) =>
        row(
          el("a", { href: `/ui/jobs/${j.id}` }, j.id),
          el("td", {}, badge(j.status)),
          j.model,
          METHODS[j.hyperparameters.scaling] ?? j.hyperparameters.scaling,
          j.fine_tuned_model ?? "–",
          fmtTime(j.created_at),
          j.promotion ? `${j.promotion.alias} (gated)` : j.promote_to_alias ?? "–",
        )
      ),
    "No jobs yet.",
  );
}

boot(() => {
  every(3000, refresh);
});
