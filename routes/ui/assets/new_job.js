// New job: drop (or choose) a JSONL file, which is uploaded and checked line by line by the server exactly
// as a job's validation will (the base model's tokenizer); problems are listed per line before anything
// starts. Then base model, method and hyper-parameters (empty = the default shown) and an optional
// (eval-gated) promotion; Start creates the job and opens its page.
import { announce, api, boot, el, fmtNum } from "./app.js";

const form = document.getElementById("new-job");
const start = document.getElementById("start-job");
/** Per role: the uploaded file id and whether its check passed (null: not checked yet). */
const files = { training: null, validation: null };

function setError(text) {
  document.getElementById("form-error").textContent = text;
}

function updateStart() {
  const ok = files.training?.valid === true && (files.validation === null || files.validation.valid === true);
  start.disabled = !ok;
}

function maxLength() {
  const v = form.elements.max_length.value;
  return v === "" ? null : Number(v);
}

function renderCheck(role, check) {
  const box = document.getElementById(`${role}-check`);
  if (check.error) {
    box.replaceChildren(el("p", { class: "error" }, `${check.filename}: ${check.error}`));
    return;
  }
  if (check.valid) {
    box.replaceChildren(
      el(
        "p",
        { class: "ok" },
        `✓ ${check.filename}: ${check.examples} examples, ${check.trainable_tokens} trainable tokens` +
          (check.truncated ? `, ${check.truncated} truncated` : ""),
      ),
    );
    if (role === "training" && check.hyperparameters) {
      const hp = check.hyperparameters;
      document.getElementById("auto-values").textContent =
        `For this file, auto means ${hp.n_epochs} epochs, batch size ${hp.batch_size}, ` +
        `learning rate multiplier ${fmtNum(hp.learning_rate_multiplier)}, a checkpoint every ` +
        `${hp.checkpoint_every} steps.`;
    }
    return;
  }
  const rows = check.issues.map((i) =>
    el("tr", {}, el("td", {}, i.line > 0 ? String(i.line) : "file"), el("td", {}, i.code), el("td", {}, i.message))
  );
  box.replaceChildren(
    el(
      "p",
      { class: "error" },
      `✗ ${check.filename}: ${check.issue_count} problem${check.issue_count === 1 ? "" : "s"}`,
    ),
    el(
      "table",
      { class: "issues", id: `${role}-issues` },
      el("caption", {}, `Problems in ${check.filename}, by line`),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col" }, "Line"),
          el("th", { scope: "col" }, "Code"),
          el("th", { scope: "col" }, "Problem"),
        ),
      ),
      el("tbody", {}, ...rows),
    ),
  );
}

async function check(role) {
  const f = files[role];
  if (!f) return;
  const model = document.getElementById("base-model").value;
  f.valid = null;
  updateStart();
  document.getElementById(`${role}-check`).textContent = `Checking ${f.filename}…`;
  const result = await api("/v1/dashboard/check_file", {
    method: "POST",
    body: { file: f.id, model, max_length: maxLength() },
  });
  f.valid = result.valid;
  renderCheck(role, result);
  updateStart();
}

async function upload(role, file) {
  setError("");
  const box = document.getElementById(`${role}-check`);
  box.textContent = `Uploading ${file.name}…`;
  try {
    const fd = new FormData();
    fd.append("purpose", "fine-tune");
    fd.append("file", file, file.name);
    const uploaded = await api("/v1/files", { method: "POST", body: fd });
    files[role] = { id: uploaded.id, filename: uploaded.filename, valid: null };
    await check(role);
  } catch (e) {
    files[role] = null;
    box.replaceChildren(el("p", { class: "error" }, `${file.name}: ${e.message}`));
    updateStart();
  }
}

function wireDrop(role) {
  const zone = document.getElementById(`${role}-drop`);
  const input = document.getElementById(`${role}-file`);
  input.addEventListener("change", () => {
    if (input.files?.[0]) upload(role, input.files[0]);
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer?.files?.[0];
    if (file) upload(role, file);
  });
}

/** The create request from the form: empty fields are left out (the server's defaults apply). */
function request() {
  const v = (name) => form.elements[name].value.trim();
  const num = (name) => (v(name) === "" ? undefined : Number(v(name)));
  const hp = {
    n_epochs: num("n_epochs"),
    batch_size: num("batch_size"),
    learning_rate_multiplier: num("learning_rate_multiplier"),
    rank: num("rank"),
    alpha: num("alpha"),
    scaling: v("scaling"),
    interval: num("interval"),
    lipschitz: v("lipschitz") === "" ? undefined : v("lipschitz") === "auto" ? "auto" : Number(v("lipschitz")),
    merge_split: v("merge_split"),
    lr_boost: num("lr_boost"),
    max_length: num("max_length"),
    checkpoint_every: num("checkpoint_every"),
    target_modules: [...form.querySelectorAll("input[name=target_modules]:checked")].map((c) => c.value),
  };
  const body = {
    model: v("model"),
    training_file: files.training.id,
    ...(files.validation ? { validation_file: files.validation.id } : {}),
    ...(v("suffix") ? { suffix: v("suffix") } : {}),
    ...(num("seed") !== undefined ? { seed: num("seed") } : {}),
    method: { type: "supervised", supervised: { hyperparameters: JSON.parse(JSON.stringify(hp)) } },
  };
  const alias = v("alias");
  if (alias) {
    if (document.getElementById("promote-gate").checked) {
      body.promotion = {
        alias,
        metric: v("metric"),
        ...(num("must_beat") !== undefined ? { must_beat: num("must_beat") } : {}),
        ...(num("min_improvement") !== undefined ? { min_improvement: num("min_improvement") } : {}),
      };
    } else body.promote_to_alias = alias;
  }
  return body;
}

boot(async () => {
  const ov = await api("/v1/dashboard");
  const select = document.getElementById("base-model");
  select.replaceChildren(...ov.base_models.map((id) => el("option", { value: id }, id)));
  wireDrop("training");
  wireDrop("validation");
  // The checks depend on the model's tokenizer and max_length.
  select.addEventListener("change", () => Promise.all([check("training"), check("validation")]));
  form.elements.max_length.addEventListener("change", () => Promise.all([check("training"), check("validation")]));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (start.disabled) return;
    setError("");
    start.disabled = true;
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", body: request() });
      announce(`Job ${job.id} created.`);
      location.href = `/ui/jobs/${job.id}`;
    } catch (err) {
      setError(err.param ? `${err.param}: ${err.message}` : err.message);
      updateStart();
    }
  });
});
