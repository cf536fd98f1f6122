// The query page: pick a face (upload, drop or a random gallery row), a target value and k; show the
// generated face and the top matches. Talks only to this server's /info, /query and /gallery.
// Every control works from the keyboard: "Choose a photo…" is a button that opens the file chooser.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, file: null, row: null, sequence: 0 };
const DROP_PROMPT = "Drop a face photo here, or";

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadInfo() {
  const response = await fetch("/info");
  const info = await response.json();
  state.info = info;
  $("about").textContent = `model ${info.model || info.checkpoint_sha256.slice(0, 12)} · ${info.edit_factor} model · ` +
    `${info.layer} features · FAISS ${info.factory} · gallery ${info.gallery_name || ""} of ${info.gallery_size} faces`;
  $("factor").textContent = info.edit_factor;
  const select = $("target");
  select.replaceChildren(...info.vocabulary.map((value) => new Option(value, value)));
  select.value = info.vocabulary.includes("+30") ? "+30" : info.vocabulary[info.vocabulary.length - 1];
  const factors = Object.entries(info.factors || {});
  if (factors.length > 1) { // a model of several factors: one target per factor, from its own vocabulary
    $("target-label").hidden = true;
    $("targets").replaceChildren(...factors.map(([factor, values]) => {
      const label = document.createElement("label");
      const choice = document.createElement("select");
      choice.id = `target-${factor}`;
      choice.dataset.factor = factor;
      choice.replaceChildren(...values.map((value) => new Option(value, value)));
      choice.value = values.includes("+30") ? "+30" : values[values.length - 1];
      choice.addEventListener("change", search);
      label.append(`Target ${factor} `, choice);
      return label;
    }));
  }
  $("k").max = info.limits.max_k;
  $("k").value = Math.min(5, info.limits.max_k);
  setStatus("Choose a face to search for.");
}

function forgetPreview() {
  const url = $("preview").getAttribute("src");
  if (url && url.startsWith("blob:")) URL.revokeObjectURL(url); // the chosen file's bytes are let go
}

function showPreview(url) {
  forgetPreview();
  $("preview").src = url;
  $("preview").alt = "the chosen face";
  $("preview").hidden = false;
  $("search").disabled = false;
}

function hidePreview() {
  forgetPreview();
  $("preview").hidden = true;
  $("preview").removeAttribute("src");
  $("preview").alt = "";
}

function clearResults() {
  $("results").hidden = true;
  delete $("results").dataset.target;
  $("hits").replaceChildren();
  ["query-image", "generated-image"].forEach((id) => $(id).removeAttribute("src"));
}

// An error leaves nothing of the last query on screen: no old results, no preview, nothing to search.
function showError(text) {
  clearResults();
  hidePreview();
  state.file = null;
  state.row = null;
  $("search").disabled = true;
  $("drop-text").textContent = DROP_PROMPT;
  setStatus(text, true);
}

function setFile(file) {
  if (!file) return;
  state.file = file;
  state.row = null;
  showPreview(URL.createObjectURL(file));
  $("drop-text").textContent = file.name;
  search();
}

function setRow(row) {
  state.file = null;
  state.row = row;
  showPreview(`/gallery/${row}.png`);
  $("drop-text").textContent = `gallery face ${row}`;
  search();
}

function describe(factors) {
  return Object.entries(factors).map(([name, value]) => `${name} ${value}`).join(" · ");
}

function hitItem(hit) {
  const item = document.createElement("li");
  const verdict = hit.correct === null ? "unknown" : hit.correct ? "correct" : "wrong";
  item.className = `hit ${verdict}`;
  const image = new Image();
  image.src = hit.image;
  image.alt = `gallery face ${hit.gallery_row}`;
  const mark = { correct: "✓ same person", wrong: "✗ other", unknown: "? not known" }[verdict];
  const caption = document.createElement("div");
  const line = (...parts) => {
    const div = document.createElement("div");
    parts.forEach(([text, cls]) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (cls) span.className = cls;
      div.append(span);
    });
    caption.append(div);
  };
  line([`#${hit.rank}`, "rank"], [" · d = "], [hit.distance.toFixed(4), "distance"]);
  line([hit.identity ?? "", "identity"]);
  line([describe(hit.factors)]);
  line([mark, "mark"]);
  item.append(image, caption);
  return item;
}

function render(answer) {
  $("query-image").src = answer.query.image;
  const truth = answer.query.truth;
  $("query-caption").textContent = truth.identity ? `query: ${truth.identity}, ${describe(
    Object.fromEntries(Object.entries(truth).filter(([name]) => name !== "identity" && name !== "source")))}`
    : `query: ${answer.query.label}`;
  $("generated-image").src = answer.generated;
  $("generated-caption").textContent = `generated: ${answer.edit_factor} ${answer.target}`;
  $("hits-title").textContent = `Top ${answer.results.length} in ${answer.edit_factor} ${answer.target}`;
  $("hits").replaceChildren(...answer.results.map(hitItem));
  const t = answer.timing_ms;
  $("timing").textContent = `generate ${t.generate.toFixed(1)} ms · search ${t.search.toFixed(1)} ms · batch of ${t.batch_size}`;
  $("results").hidden = false;
  $("results").dataset.target = answer.target;
  const notes = answer.query.notes.length ? ` (${answer.query.notes.join("; ")})` : "";
  setStatus(`Done${notes}.`);
}

async function search() {
  if (state.file === null && state.row === null) return;
  const form = new FormData();
  if (state.file !== null) form.append("image", state.file);
  else form.append("row", String(state.row));
  const perFactor = $("targets").querySelectorAll("select");
  if (perFactor.length) perFactor.forEach((choice) => form.append(choice.dataset.factor, choice.value));
  else form.append("target", $("target").value);
  form.append("k", $("k").value);
  const sequence = ++state.sequence;
  setStatus("Searching…");
  try {
    const response = await fetch("/query", { method: "POST", body: form });
    const answer = await response.json().catch(() => ({ error: `error ${response.status}: not a JSON answer` }));
    if (sequence !== state.sequence) return; // a newer search has started
    if (!response.ok) {
      showError(answer.error || `error ${response.status}`);
      return;
    }
    render(answer);
  } catch (err) {
    if (sequence === state.sequence) showError(`request failed: ${err}`);
  }
}

function wireDrop() {
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    setFile(event.dataTransfer.files[0]);
  });
}

$("choose").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (event) => {
  setFile(event.target.files[0]);
  event.target.value = ""; // choosing the same file again is a new choice
});
$("preview").addEventListener("error", hidePreview); // a file the browser cannot show: no broken-image icon
$("random").addEventListener("click", () => setRow(Math.floor(Math.random() * state.info.gallery_size)));
$("target").addEventListener("change", search);
$("k").addEventListener("change", search);
$("search").addEventListener("click", search);
wireDrop();
loadInfo().catch((err) => setStatus(`cannot reach the server: ${err}`, true));
