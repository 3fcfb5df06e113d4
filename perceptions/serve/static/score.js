// The Score page: photos dropped or chosen are sent one at a time to POST /api/score?explain=<study>; each gets a
// card with its thumbnail, the six studies' scores and deciles (bars) and a Grad-CAM heat map whose study can be
// switched. Errors are one line on the photo's card.
"use strict";

(() => {
  const {api, decileColour} = perceptions;
  const input = document.getElementById("file-input");
  const drop = document.getElementById("drop");
  const results = document.getElementById("results");
  const template = document.getElementById("result-template");
  const firstStudy = document.getElementById("explain-study");
  const queue = [];
  let running = false;

  // One photo at a time: the server batches concurrent requests, but in order the cards fill top to bottom.
  async function pump() {
    if (running) return;
    running = true;
    while (queue.length) await queue.shift()();
    running = false;
  }

  function addFiles(fileList) {
    for (const file of Array.from(fileList)) {
      const card = makeCard(file);
      results.append(card.root);
      queue.push(() => score(card, firstStudy.value, true));
    }
    pump();
  }

  function makeCard(file) {
    const root = template.content.firstElementChild.cloneNode(true);
    const card = {
      root, file,
      thumb: root.querySelector("img.thumb"),
      status: root.querySelector(".status"),
      error: root.querySelector(".error"),
      table: root.querySelector(".study-table"),
      select: root.querySelector("select.explain-study"),
      heatmap: root.querySelector("img.heatmap"),
      heatmapStatus: root.querySelector(".heatmap-status"),
      explain: root.querySelector(".explain"),
      url: null,
    };
    root.querySelector(".name").textContent = file.name;
    card.thumb.setAttribute("alt", `photo ${file.name}`);
    // A file the browser cannot draw (not an image, or a broken one) shows its name only, not a broken icon.
    card.thumb.addEventListener("error", () => { card.thumb.hidden = true; });
    if (file.type.startsWith("image/")) {
      card.url = URL.createObjectURL(file);
      card.thumb.src = card.url;
    } else {
      card.thumb.hidden = true;
    }
    card.select.value = firstStudy.value;
    card.select.disabled = true;
    card.select.addEventListener("change", () => score(card, card.select.value, false));
    return card;
  }

  function showError(card, message) {
    card.error.textContent = message;
    card.error.hidden = false;
  }

  function fill(card, studies) {
    for (const row of card.table.querySelectorAll(".study-row")) {
      const result = studies[row.dataset.study];
      row.hidden = !result;
      if (!result) continue;
      row.querySelector(".score").textContent = Number(result.score).toFixed(2);
      row.querySelector(".decile").textContent = String(result.decile);
      const bar = row.querySelector(".bar");
      bar.setAttribute("aria-label", `decile ${result.decile} of 10`);
      const fillEl = bar.querySelector(".fill");
      fillEl.style.width = `${Math.max(0, Math.min(10, result.decile)) * 10}%`;
      fillEl.style.backgroundColor = decileColour(result.decile);
    }
    card.table.hidden = false;
  }

  // Scores (first time) or re-explains (study switched) one photo; both are the same API call.
  async function score(card, study, first) {
    const form = new FormData();
    form.append("image", card.file, card.file.name);
    card.select.disabled = true;
    card.error.hidden = true;
    card.heatmapStatus.textContent = `Computing the heat map for ${study}\u2026`;
    card.heatmap.classList.add("stale");
    try {
      const answer = await api(`/api/score?explain=${encodeURIComponent(study)}`, {method: "POST", body: form});
      fill(card, answer.studies || {});
      if (typeof answer.heatmap === "string" && answer.heatmap.startsWith("data:image/")) {
        card.heatmap.src = answer.heatmap;
        card.heatmap.setAttribute("alt", `Grad-CAM heat map for ${study} on ${card.file.name}`);
        card.heatmap.hidden = false;
        card.heatmapStatus.textContent = "";
      } else {
        card.heatmapStatus.textContent = "no heat map in the answer";
      }
      card.select.value = study;
      card.select.disabled = false;
    } catch (e) {
      showError(card, e.message);
      card.heatmapStatus.textContent = "";
      // A photo the server refused cannot be explained either; a failed re-explain keeps the older heat map.
      card.explain.hidden = first;
      card.select.disabled = first;
      if (!first) card.select.value = card.heatmap.dataset.study || card.select.value;
    } finally {
      card.heatmap.classList.remove("stale");
      if (first) card.status.hidden = true;
      if (!card.heatmap.hidden) card.heatmap.dataset.study = card.select.value;
    }
  }

  input.addEventListener("change", () => {
    const files = Array.from(input.files);
    input.value = "";  // so that choosing the same photo again scores it again
    addFiles(files);
  });
  // The whole zone opens the chooser (the label inside already does, natively).
  drop.addEventListener("click", (e) => {
    if (e.target.closest("label, input")) return;
    input.click();
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
  // A photo dropped just beside the zone would otherwise replace the page with the photo.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  document.getElementById("clear").addEventListener("click", () => {
    for (const img of results.querySelectorAll("img.thumb")) {
      if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    }
    results.replaceChildren();
  });
})();
