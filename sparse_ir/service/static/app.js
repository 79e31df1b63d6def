// The search page: plain JavaScript against the service's JSON API (no build step, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("sparse-ir-token") || "", hasDense: false };
const WORD = /[\p{L}\p{N}]+/gu;
const STOP_WORDS = new Set(("a an and are as at be by for from has have in is it of on or " +
  "that the this to was were with").split(" "));

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" }[c]));
}

// Escape a text and wrap its words found in `terms` (lower-case strings) in <mark>.
function highlight(text, terms) {
  let out = "", last = 0;
  for (const match of text.matchAll(WORD)) {
    out += escapeHtml(text.slice(last, match.index));
    const word = match[0];
    out += terms.has(word.toLowerCase()) ? `<mark>${escapeHtml(word)}</mark>` : escapeHtml(word);
    last = match.index + word.length;
  }
  return out + escapeHtml(text.slice(last));
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) $("token-bar").hidden = false;
  if (!response.ok) {
    const error = new Error(data.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadInfo() {
  try {
    const stats = await api("GET", "/stats");
    const index = stats.index;
    let info = `${index.documents.toLocaleString()} documents · ${index.postings.toLocaleString()} postings` +
      ` · model ${index.model || "?"} · ${index.generation}`;
    if (stats.dense_index) {
      state.hasDense = true;
      $("hybrid-label").hidden = false;
      info += ` · dense: ${stats.dense_index.model || "?"} (${stats.dense_index.dim}-d)`;
    }
    $("index-info").textContent = info;
  } catch (error) {
    $("index-info").textContent = error.status === 401 ? "" : `index info unavailable: ${error.message}`;
  }
}

function chip(token, cls, extra) {
  const small = extra === undefined ? "" : `<small>${escapeHtml(String(extra))}</small>`;
  return `<span class="chip ${cls}">${escapeHtml(token)}${small}</span>`;
}

function renderQueryVector(terms) {
  const box = $("query-vector");
  if (!terms || !terms.length) { box.hidden = true; return; }
  const inText = terms.filter((t) => t.in_text);
  const expansion = terms.filter((t) => !t.in_text);
  box.innerHTML = `<h2>Query vector · ${terms.length} terms</h2>` +
    `<div class="row"><span class="label">from the query text</span>` +
    (inText.map((t) => chip(t.token, "text", t.impact)).join("") || "—") + `</div>` +
    `<div class="row"><span class="label">expansion terms</span>` +
    (expansion.slice(0, 40).map((t) => chip(t.token, "exp", t.impact)).join("") || "—") +
    (expansion.length > 40 ? ` <small>+${expansion.length - 40} more</small>` : "") + `</div>`;
  box.hidden = false;
}

function chart(hit) {
  const top = hit.contributions.slice(0, 8);
  if (!top.length) return "";
  const max = top[0].score;
  const rows = top.map((c) => {
    const share = (100 * c.score / hit.score).toFixed(0);
    const width = (100 * c.score / max).toFixed(1);
    const title = `${c.token}: query ${c.query_weight} × document ${c.document_impact} = ${c.score}` +
      (c.in_text ? " (in the text)" : " (expansion: not in the text)");
    return `<div class="bar-row" title="${escapeHtml(title)}"><span class="tok">${escapeHtml(c.token)}</span>` +
      `<span class="track"><span class="bar ${c.in_text ? "" : "exp"}" style="width:${width}%"></span></span>` +
      `<span class="pct">${share}%</span></div>`;
  }).join("");
  return `<div class="chart" aria-label="term contributions"><div class="caption">` +
    `Top term contributions (share of score)</div>${rows}</div>`;
}

function renderHits(data, hybrid, queryText) {
  const list = $("hits");
  list.innerHTML = "";
  // hybrid hits: the query's words, less the commonest function words
  const queryWords = new Set((queryText.toLowerCase().match(WORD) || [])
    .filter((w) => !STOP_WORDS.has(w)));
  for (const hit of data.hits) {
    const item = document.createElement("li");
    item.className = "hit";
    const title = hit.title || hit.id;
    if (hybrid) {
      const fmt = (v) => v === null ? "—" : (typeof v === "number" ? +v.toFixed(4) : v);
      item.innerHTML = `<div class="head"><span class="rank">${hit.rank}.</span>` +
        `<span class="title">${escapeHtml(title)}</span>` +
        `<span class="meta">fused ${hit.score.toFixed(4)} · id ${escapeHtml(hit.id)}</span></div>` +
        `<div class="snippet">${highlight(hit.snippet || "", queryWords)}</div><div></div>` +
        `<div class="ranks">sparse rank <b>${fmt(hit.sparse_rank)}</b> (score ${fmt(hit.sparse_score)})` +
        ` · dense rank <b>${fmt(hit.dense_rank)}</b> (score ${fmt(hit.dense_score)})</div>`;
    } else {
      const matched = new Set(hit.highlight || hit.matched_terms);
      const expansion = hit.expansion_terms.length
        ? `<div class="expansion">matched by expansion: ` +
          hit.expansion_terms.slice(0, 12).map((t) => chip(t, "exp")).join("") + `</div>` : "";
      item.innerHTML = `<div class="head"><span class="rank">${hit.rank}.</span>` +
        `<span class="title">${escapeHtml(title)}</span>` +
        `<span class="meta">score ${hit.score} · id ${escapeHtml(hit.id)}</span></div>` +
        `<div><div class="snippet">${highlight(hit.snippet || "", matched)}</div>${expansion}</div>` +
        chart(hit);
    }
    list.appendChild(item);
  }
}

async function runSearch(text) {
  const k = parseInt($("k").value, 10);
  const hybrid = state.hasDense && $("hybrid").checked;
  setStatus("Searching…");
  try {
    let data;
    if (hybrid) {
      data = await api("POST", "/hybrid", { text, k });
      $("query-vector").hidden = true;
    } else {
      const body = { text, k, explain: true };
      if ($("mode").value) body.mode = $("mode").value;
      data = await api("POST", "/search", body);
      renderQueryVector(data.query_terms);
    }
    renderHits(data, hybrid, text);
    setStatus(`${data.hits.length} hits in ${data.took_ms.toFixed(1)} ms` +
      (hybrid ? ` · ${data.fusion}` : ` · ${data.mode} search`));
  } catch (error) {
    $("hits").innerHTML = "";
    setStatus(error.message, true);
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("q").value.trim();
  if (!text) return;
  history.replaceState(null, "", `?q=${encodeURIComponent(text)}`);
  runSearch(text);
});
$("hybrid").addEventListener("change", () => { if ($("q").value.trim()) runSearch($("q").value.trim()); });
$("token-save").addEventListener("click", () => {
  state.token = $("token").value.trim();
  sessionStorage.setItem("sparse-ir-token", state.token);
  $("token-bar").hidden = true;
  loadInfo();
});

loadInfo().then(() => {
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) { $("q").value = initial; runSearch(initial); }
});
