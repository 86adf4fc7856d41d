/**
 * The dashboard's pages as server-rendered markup: headings, labelled forms
 * and empty tables that each page's module (assets/<page>.js) fills from the
 * API. The new-job form shows the fine-tuning defaults from the one
 * configuration (src/train/fine_tune_config.ts through src/jobs/job_spec.ts).
 */
// Server-rendered markup is never reconciled, and Hono would print a `key` as an attribute.
// deno-lint-ignore-file jsx-key
import { BASE_LEARNING_RATE, DEFAULTS, LIMITS, PROMOTION_DEFAULTS, SCALINGS } from "../../src/jobs/job_spec.ts";
import { GATE_METRICS } from "../../src/registry/types.ts";
import { TARGET_MODULES } from "../../src/train/lm_training_graph.ts";
import { MERGE_SPLITS, type MergeSplit } from "../../src/train/lipschitz.ts";

function Table(props: { id: string; caption: string; columns: string[]; empty: string }) {
  return (
    <div class="table-wrap">
      <table id={props.id}>
        <caption>{props.caption}</caption>
        <thead>
          <tr>{props.columns.map((c) => <th scope="col">{c}</th>)}</tr>
        </thead>
        <tbody>
          <tr class="empty">
            <td colspan={props.columns.length}>{props.empty}</td>
          </tr>
        </tbody>
      </table>
    </div>
  );
}

function Stat(props: { id: string; label: string }) {
  return (
    <div class="stat">
      <dt>{props.label}</dt>
      <dd id={props.id}>–</dd>
    </div>
  );
}

export function OverviewPage() {
  return (
    <>
      <h1>Overview</h1>
      <section aria-labelledby="server-title" class="card">
        <h2 id="server-title">Server</h2>
        <dl class="stats">
          <Stat id="ov-status" label="Status" />
          <Stat id="ov-device" label="Device" />
          <Stat id="ov-bases" label="Base models" />
          <Stat id="ov-job" label="Running job" />
          <Stat id="ov-queue" label="Queue depth" />
          <Stat id="ov-active" label="Active sequences" />
          <Stat id="ov-rps" label="API requests / s" />
          <Stat id="ov-tps" label="Tokens / s (generated)" />
          <Stat id="ov-memory" label="Engine memory (used / budget)" />
          <Stat id="ov-disk" label="Data directory free" />
        </dl>
      </section>
      <section aria-labelledby="engines-title" class="card">
        <h2 id="engines-title">Loaded engines</h2>
        <Table
          id="engines"
          caption="Models loaded for serving, most recently used first"
          columns={["Model", "Memory", "Busy", "Queue", "Active"]}
          empty="No engine loaded yet."
        />
      </section>
    </>
  );
}

export function JobsPage() {
  return (
    <>
      <div class="title-row">
        <h1>Fine-tuning jobs</h1>
        <a class="button" href="/ui/jobs/new">New job</a>
      </div>
      <section class="card" aria-label="Jobs">
        <Table
          id="jobs"
          caption="Jobs, newest first"
          columns={["Job", "Status", "Base model", "Method", "Fine-tuned model", "Created", "Alias"]}
          empty="No jobs yet."
        />
      </section>
    </>
  );
}

export function JobPage(props: { jobId: string }) {
  return (
    <>
      <div class="title-row">
        <h1>
          Job <span id="job-id">{props.jobId}</span> <span id="job-status" class="badge">…</span>
        </h1>
        <div class="actions" role="group" aria-label="Job actions">
          <button type="button" id="job-pause" disabled>Pause</button>
          <button type="button" id="job-resume" disabled>Resume</button>
          <button type="button" id="job-cancel" class="danger" disabled>Cancel</button>
        </div>
      </div>
      <section class="card" aria-labelledby="progress-title">
        <h2 id="progress-title">Progress</h2>
        <dl class="stats">
          <Stat id="job-model" label="Base model" />
          <Stat id="job-ft" label="Fine-tuned model" />
          <Stat id="job-method" label="Method" />
          <Stat id="job-step" label="Step" />
          <Stat id="job-epoch" label="Epoch" />
          <Stat id="job-lr" label="Learning rate" />
          <Stat id="job-tps" label="Tokens / s" />
          <Stat id="job-eta" label="ETA" />
          <Stat id="job-error" label="Error" />
        </dl>
      </section>
      <div class="charts">
        <section class="card" aria-labelledby="loss-title">
          <h2 id="loss-title">Loss</h2>
          <div id="loss-chart" class="chart" role="img" aria-label="Training and validation loss by step" />
        </section>
        <section class="card" aria-labelledby="acc-title">
          <h2 id="acc-title">Token accuracy</h2>
          <div id="acc-chart" class="chart" role="img" aria-label="Training and validation token accuracy by step" />
        </section>
        <section class="card" aria-labelledby="scalora-title">
          <h2 id="scalora-title">ScaLoRA rescaling</h2>
          <div
            id="scalora-chart"
            class="chart"
            role="img"
            aria-label="Column-wise share, mean alpha times beta and rank of the accumulated update at each rescaling"
          />
          <dl class="stats compact">
            <Stat id="sc-share" label="Column-wise share" />
            <Stat id="sc-ab" label="Mean α·β" />
            <Stat id="sc-rank" label="Update rank (≤, per layer)" />
          </dl>
        </section>
      </div>
      <section class="card" aria-labelledby="promotion-title">
        <h2 id="promotion-title">Promotion</h2>
        <div id="promotion">No promotion requested.</div>
      </section>
      <section class="card" aria-labelledby="ckpt-title">
        <h2 id="ckpt-title">Checkpoints</h2>
        <Table
          id="checkpoints"
          caption="Checkpoints, each servable as a model"
          columns={["Step", "Model", "Train loss", "Valid loss", "Actions"]}
          empty="No checkpoint yet."
        />
      </section>
      <section class="card" aria-labelledby="events-title">
        <h2 id="events-title">Events</h2>
        <div class="table-wrap log" id="events-log" role="log" aria-labelledby="events-title" tabindex={0}>
          <table id="events">
            <caption>Newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Level</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody></tbody>
          </table>
        </div>
      </section>
    </>
  );
}

function NumberField(
  props: { name: string; label: string; placeholder: string; min?: number; max?: number; step?: string; help?: string },
) {
  const id = `hp-${props.name}`;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        type="number"
        inputmode="decimal"
        min={props.min}
        max={props.max}
        step={props.step ?? "1"}
        placeholder={props.placeholder}
        aria-describedby={props.help ? `${id}-help` : undefined}
      />
      {props.help && <small id={`${id}-help`}>{props.help}</small>}
    </div>
  );
}

function DropZone(props: { role: "training" | "validation"; label: string; required: boolean }) {
  const id = `${props.role}-file`;
  return (
    <div class="field">
      <div class="drop" id={`${props.role}-drop`} data-role={props.role}>
        <label for={id}>{props.label}</label>
        <p>Drop a JSONL file here, or choose one:</p>
        <input id={id} type="file" accept=".jsonl,.json,application/jsonl,text/plain" required={props.required} />
      </div>
      <div id={`${props.role}-check`} class="check" aria-live="polite"></div>
    </div>
  );
}

const SPLIT_LABELS: Record<MergeSplit, string> = {
  larger: "the smaller side (default)",
  balanced: "both sides alike",
  solve: "as the solve says (smaller steps)",
};

const METHOD_LABELS: Record<(typeof SCALINGS)[number], string> = {
  column: "ScaLoRA (column-wise scaling)",
  scalar: "ScaLoRA-scalar",
  none: "LoRA",
};

export function NewJobPage() {
  const d = DEFAULTS;
  return (
    <>
      <h1>New fine-tuning job</h1>
      <form id="new-job" class="card" novalidate>
        <fieldset>
          <legend>Data</legend>
          <DropZone role="training" label="Training file (required)" required />
          <DropZone role="validation" label="Validation file (optional)" required={false} />
        </fieldset>
        <fieldset>
          <legend>Model and method</legend>
          <div class="field">
            <label for="base-model">Base model</label>
            <select id="base-model" name="model" required></select>
          </div>
          <div class="field">
            <label for="method">Method</label>
            <select id="method" name="scaling">
              {SCALINGS.map((s) => <option value={s} selected={s === d.scaling}>{METHOD_LABELS[s]}</option>)}
            </select>
          </div>
          <div class="field">
            <label for="suffix">Suffix</label>
            <input id="suffix" name="suffix" type="text" pattern="[a-z0-9-]{1,64}" placeholder="e.g. support-bot" />
          </div>
          <div class="field">
            <label for="seed">Seed</label>
            <input id="seed" name="seed" type="number" min={0} step="1" placeholder="random" />
          </div>
        </fieldset>
        <fieldset>
          <legend>Hyper-parameters (empty = default)</legend>
          <NumberField
            name="n_epochs"
            label="Epochs"
            placeholder="auto"
            min={LIMITS.nEpochs.min}
            max={LIMITS.nEpochs.max}
            help="auto: from the number of examples"
          />
          <NumberField
            name="batch_size"
            label="Batch size"
            placeholder="auto"
            min={LIMITS.batchSize.min}
            max={LIMITS.batchSize.max}
            help="auto: from the number of examples"
          />
          <NumberField
            name="learning_rate_multiplier"
            label="Learning rate multiplier"
            placeholder="auto"
            min={0}
            step="any"
            help={`× ${BASE_LEARNING_RATE} = peak learning rate`}
          />
          <NumberField name="rank" label="Rank r" placeholder={String(d.rank)} min={LIMITS.rank.min} />
          <NumberField
            name="alpha"
            label="Alpha"
            placeholder={`${d.alphaPerRank} × rank`}
            min={0}
            step="any"
          />
          <NumberField
            name="interval"
            label="Scaling interval"
            placeholder={String(d.interval)}
            min={LIMITS.interval.min}
            help="steps between ScaLoRA merges (not used by LoRA)"
          />
          <div class="field">
            <label for="hp-lipschitz">Lipschitz L</label>
            <input id="hp-lipschitz" name="lipschitz" type="text" placeholder={String(d.lipschitz)} />
          </div>
          <div class="field">
            <label for="hp-merge-split">Merge from (auto L)</label>
            <select id="hp-merge-split" name="merge_split">
              {MERGE_SPLITS.map((m) => <option value={m} selected={m === d.mergeSplit}>{SPLIT_LABELS[m]}</option>)}
            </select>
          </div>
          <NumberField
            name="lr_boost"
            label="LR boost cap (auto L)"
            placeholder={String(d.lrBoost)}
            min={LIMITS.lrBoost.min}
            max={LIMITS.lrBoost.max}
            step="any"
            help="ScaLoRA steps at up to this × the lr while the loss keeps falling; 1: off"
          />
          <NumberField
            name="max_length"
            label="Max length (tokens)"
            placeholder={String(d.maxLength)}
            min={LIMITS.maxLength.min}
            max={LIMITS.maxLength.max}
          />
          <NumberField
            name="checkpoint_every"
            label="Checkpoint every (steps)"
            placeholder="auto"
            min={LIMITS.checkpointEvery.min}
            help="auto: once per epoch; 0: only the final model"
          />
          <fieldset class="modules">
            <legend>Target modules</legend>
            {TARGET_MODULES.map((m) => (
              <label class="check-label">
                <input type="checkbox" name="target_modules" value={m} checked={d.targetModules.includes(m)} /> {m}
              </label>
            ))}
          </fieldset>
          <p class="hint" id="auto-values"></p>
        </fieldset>
        <fieldset>
          <legend>Promotion (optional)</legend>
          <div class="field">
            <label for="promote-alias">Alias to point at the result</label>
            <input id="promote-alias" name="alias" type="text" placeholder="e.g. prod" />
          </div>
          <div class="field">
            <label class="check-label">
              <input id="promote-gate" type="checkbox" name="gate" checked /> Only if it wins the evaluation gate
            </label>
          </div>
          <div class="field">
            <label for="gate-metric">Gate metric</label>
            <select id="gate-metric" name="metric">
              {GATE_METRICS.map((m) => <option value={m} selected={m === PROMOTION_DEFAULTS.metric}>{m}</option>)}
            </select>
          </div>
          <div class="field">
            <label for="gate-threshold">Must beat (empty = the alias's current target)</label>
            <input id="gate-threshold" name="must_beat" type="number" step="any" placeholder="current" />
          </div>
          <div class="field">
            <label for="gate-margin">Minimum improvement</label>
            <input
              id="gate-margin"
              name="min_improvement"
              type="number"
              min={0}
              step="any"
              placeholder={String(PROMOTION_DEFAULTS.min_improvement)}
            />
          </div>
        </fieldset>
        <div class="form-actions">
          <button type="submit" id="start-job" disabled>Start fine-tuning</button>
          <p id="form-error" class="error" role="alert"></p>
        </div>
      </form>
    </>
  );
}

export function VersionsPage() {
  return (
    <>
      <h1>Model versions</h1>
      <section class="card" aria-label="Versions">
        <div class="field inline">
          <label class="check-label">
            <input type="checkbox" id="show-checkpoints" /> Show checkpoints
          </label>
        </div>
        <Table
          id="versions"
          caption="Immutable versions: base + delta"
          columns={["Name", "Kind", "Storage", "Size", "Hash", "Parent job", "Valid loss", "Created", "Export"]}
          empty="No versions yet."
        />
      </section>
      <section class="card" aria-labelledby="export-title">
        <h2 id="export-title">Export</h2>
        <div id="export-result" aria-live="polite">Choose an export format in the table.</div>
      </section>
    </>
  );
}

export function AliasesPage() {
  return (
    <>
      <h1>Aliases</h1>
      <section class="card" aria-labelledby="aliases-title">
        <h2 id="aliases-title">All aliases</h2>
        <Table
          id="aliases"
          caption="Aliases and the model each serves"
          columns={["Alias", "Target", "Serving here", "Updated", "Actions"]}
          empty="No aliases yet."
        />
      </section>
      <form id="switch-form" class="card">
        <h2>Switch an alias</h2>
        <div class="grid">
          <div class="field">
            <label for="alias-name">Alias</label>
            <input id="alias-name" name="name" type="text" list="alias-names" required placeholder="e.g. prod" />
            <datalist id="alias-names"></datalist>
          </div>
          <div class="field">
            <label for="alias-target">Target model</label>
            <select id="alias-target" name="target" required></select>
          </div>
          <div class="field">
            <label for="alias-reason">Reason</label>
            <input id="alias-reason" name="reason" type="text" />
          </div>
        </div>
        <fieldset>
          <legend>Evaluation gate (for "Evaluate, then switch")</legend>
          <div class="field">
            <label for="eval-metric">Metric</label>
            <select id="eval-metric" name="metric">
              {GATE_METRICS.map((m) => <option value={m} selected={m === PROMOTION_DEFAULTS.metric}>{m}</option>)}
            </select>
          </div>
          <div class="field">
            <label for="eval-threshold">Must beat (empty = the alias's current target)</label>
            <input id="eval-threshold" name="must_beat" type="number" step="any" placeholder="current" />
          </div>
          <div class="field">
            <label for="eval-file">Evaluation file</label>
            <select id="eval-file" name="file">
              <option value="">The target's validation file</option>
            </select>
          </div>
        </fieldset>
        <div class="form-actions">
          <button type="submit" id="switch-now">Switch</button>
          <button type="button" id="switch-gated">Evaluate, then switch</button>
        </div>
        <div id="switch-result" class="result" role="status" aria-live="polite"></div>
      </form>
      <section class="card" aria-labelledby="history-title">
        <h2 id="history-title">History</h2>
        <div class="field inline">
          <label for="history-alias">Alias</label>
          <select id="history-alias"></select>
        </div>
        <Table
          id="history"
          caption="Changes, newest first (rows with an evaluation show both scores)"
          columns={["#", "When", "Action", "From", "To", "Evaluation", "Reason"]}
          empty="Choose an alias."
        />
      </section>
    </>
  );
}

function ChatPane(props: { side: "a" | "b"; hidden?: boolean }) {
  const label = props.side === "a" ? "Model" : "Second model";
  return (
    <section class="card pane" id={`pane-${props.side}`} hidden={props.hidden} aria-label={`Chat with ${label}`}>
      <div class="field">
        <label for={`model-${props.side}`}>{label}</label>
        <select id={`model-${props.side}`} name={`model-${props.side}`}></select>
      </div>
      <div id={`chat-${props.side}`} class="transcript" role="log" aria-live="polite" tabindex={0}>
      </div>
      <p class="usage" id={`usage-${props.side}`}></p>
    </section>
  );
}

export function PlaygroundPage() {
  return (
    <>
      <h1>Playground</h1>
      <form id="chat-form" class="card">
        <div class="row">
          <div class="field">
            <label for="temperature">Temperature</label>
            <input id="temperature" name="temperature" type="number" min={0} max={2} step="0.1" value="0.7" />
          </div>
          <div class="field">
            <label for="max-tokens">Max tokens</label>
            <input id="max-tokens" name="max_tokens" type="number" min={1} max={4096} step="1" value="128" />
          </div>
          <div class="field">
            <label class="check-label">
              <input type="checkbox" id="compare" /> Compare two models side by side
            </label>
          </div>
        </div>
        <div class="field">
          <label for="system-prompt">System prompt</label>
          <input id="system-prompt" name="system" type="text" placeholder="optional" />
        </div>
        <div class="field">
          <label for="prompt">Message</label>
          <textarea id="prompt" name="prompt" rows={3} required></textarea>
        </div>
        <div class="form-actions">
          <button type="submit" id="send">Send</button>
          <button type="button" id="stop" class="secondary" disabled>Stop</button>
          <button type="button" id="clear" class="secondary">Clear conversation</button>
        </div>
      </form>
      <div class="panes">
        <ChatPane side="a" />
        <ChatPane side="b" hidden />
      </div>
    </>
  );
}
