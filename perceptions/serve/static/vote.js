// The Vote page, after Place Pulse: GET /api/pair gives two images for the chosen question; a click or a key
// (ArrowLeft, ArrowRight, "=") sends POST /api/vote, and the next pair is asked for only after the vote is saved,
// so the server's pair chooser has seen it. The buttons stay disabled while a vote or a pair is on its way, so a
// double click sends one vote.
"use strict";

(() => {
  const {api, withToken} = perceptions;
  const STORE = "perceptions.voter";
  const studySelect = document.getElementById("study");
  const question = document.getElementById("question");
  const voter = document.getElementById("voter");
  const voterLine = document.getElementById("voter-line");
  const voterShown = document.getElementById("voter-shown");
  const count = document.getElementById("count");
  const message = document.getElementById("message");
  const pairBox = document.querySelector(".pair");
  const images = {left: document.getElementById("left-image"), right: document.getElementById("right-image")};
  const buttons = Array.from(document.querySelectorAll("button.vote"));
  let pair = null;
  let busy = false;
  let requests = 0;  // answers to an older request (the study changed meanwhile) are dropped

  function setBusy(value) {
    busy = value;
    for (const b of buttons) b.disabled = value || !pair;
    pairBox.setAttribute("aria-busy", String(value));
    pairBox.classList.toggle("loading", value);
  }

  function say(text, isError = false) {
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  function storedVoter() {
    try {
      return window.localStorage.getItem(STORE) || "";
    } catch (e) {
      return "";  // storage switched off: the name is simply not remembered
    }
  }

  function showVoter() {
    const name = voter.value.trim();
    voterShown.textContent = name;
    voterLine.hidden = !name;
    try {
      window.localStorage.setItem(STORE, name);
    } catch (e) { /* not remembered */ }
  }

  // Resolves once the browser holds the decoded image, so both places appear together, not half-drawn.
  function preload(url) {
    const img = new Image();
    img.src = url;
    return img.decode().then(() => url);
  }

  async function loadPair(tries = 3) {
    const mine = ++requests;
    const study = studySelect.value;
    pair = null;
    setBusy(true);
    try {
      const next = await api(`/api/pair?study=${encodeURIComponent(study)}`);
      const urls = [withToken(next.left_url), withToken(next.right_url)];
      try {
        await Promise.all(urls.map(preload));
      } catch (e) {
        if (mine !== requests) return;
        if (tries > 1) return loadPair(tries - 1);
        throw new Error("the images of the pair could not be loaded");
      }
      if (mine !== requests) return;
      images.left.src = urls[0];
      images.right.src = urls[1];
      pair = next;
    } catch (e) {
      if (mine === requests) say(`${e.message} (change the question or reload the page to try again)`, true);
    } finally {
      if (mine === requests) setBusy(false);
    }
  }

  async function loadCount() {
    const study = studySelect.value;
    try {
      const answer = await api(`/api/votes/count?study=${encodeURIComponent(study)}`);
      if (study === studySelect.value) count.textContent = String(answer.count);
    } catch (e) {
      say(e.message, true);
    }
  }

  async function vote(choice) {
    if (busy || !pair) return;
    const body = {study: pair.study, left: pair.left, right: pair.right, choice, voter: voter.value.trim()};
    setBusy(true);
    const mine = requests;
    let saved = false;
    try {
      await api("/api/vote", {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify(body)});
      saved = true;
      if (body.study === studySelect.value) count.textContent = String(Number(count.textContent) + 1);
      say(choice === "equal" ? "Saved: about the same." : `Saved: ${choice}.`);
    } catch (e) {
      say(e.message, true);  // the same pair stays, to vote again
    } finally {
      if (!saved || mine !== requests) setBusy(false);
    }
    if (saved && mine === requests) await loadPair();
  }

  for (const b of buttons) b.addEventListener("click", () => vote(b.dataset.choice));
  for (const side of ["left", "right"]) images[side].addEventListener("click", () => vote(side));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.altKey || e.metaKey || e.target.closest("input, select, textarea")) return;
    const choice = {ArrowLeft: "left", ArrowRight: "right", "=": "equal"}[e.key];
    if (!choice) return;
    e.preventDefault();
    vote(choice);
  });
  studySelect.addEventListener("change", () => {
    question.textContent = studySelect.selectedOptions[0].dataset.question || "";
    say("");
    loadCount();
    loadPair();
  });
  voter.addEventListener("input", showVoter);
  voter.value = storedVoter();
  showVoter();
  loadCount();
  loadPair();
  // For scripts and tests (as the map page's window.perceptionsMap): the pair on screen, and whether a vote or a
  // pair is on its way.
  window.perceptionsVote = {pair: () => (pair ? Object.assign({}, pair) : null), busy: () => busy};
})();
