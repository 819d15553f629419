"use strict";
// No token here: the session is an HttpOnly cookie that the start page's registration set, and the
// browser sends it with every request of this page (and with no other site's).
const observer = decodeURIComponent(location.pathname.split("/").pop());
const api = "/api/" + encodeURIComponent(observer);
let trial = null, timer = null, busy = false;

function load(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("cannot load " + src));
    image.src = src;
  });
}

function fail(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
}

function buttons(enabled) {
  for (const id of ["choose-left", "choose-right"]) document.getElementById(id).disabled = !enabled;
}

// The server's state, or an error with its one-line message.
async function fetchState() {
  const response = await fetch(api + "/state");
  const body = await response.json();
  if (!response.ok) throw new Error(body.error);
  return body;
}

async function show(state) {
  clearInterval(timer);
  // A practice trial is labelled as one, and its progress counts the practice only: it is not one of the comparisons.
  document.getElementById("practice").hidden = state.practice === null;
  document.getElementById("progress").textContent = state.practice === null
    ? `Comparison ${Math.min(state.done + 1, state.total)} of ${state.total}`
    : `Practice ${state.practice.number} of ${state.practice.total}`;
  trial = state.trial;
  if (trial === null) {
    // The end page replaces the session: no pair, no instructions, a plain background.
    document.getElementById("session").hidden = true;
    document.getElementById("done-count").textContent = `You answered all ${state.total} comparisons.`;
    document.getElementById("done").hidden = false;
    document.body.className = "finished";
    return;
  }
  const [reference, left, right] = await Promise.all([load(trial.reference), load(trial.left), load(trial.right)]);
  const scale = window.devicePixelRatio || 1;
  const sides = {left: [left, document.getElementById("left")], right: [right, document.getElementById("right")]};
  for (const [image, element] of Object.values(sides)) {
    element.style.width = trial.width / scale + "px";
    element.style.height = trial.height / scale + "px";
    element.src = image.src;
  }
  let showingReference = false;
  timer = setInterval(() => {
    showingReference = !showingReference;
    for (const [image, element] of Object.values(sides)) {
      element.src = showingReference ? reference.src : image.src;
    }
  }, state.flicker_ms);
  document.getElementById("pair").hidden = false;
  document.getElementById("pair").dataset.trial = trial.id;
  buttons(true);
}

async function choose(choice) {
  if (busy || trial === null) return;
  busy = true;
  buttons(false);
  try {
    let response, body;
    try {
      response = await fetch(api + "/answer", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({trial: trial.id, choice: choice}),
      });
      body = await response.json();
    } catch (error) {
      // No answer from the server (a lost connection, a full server): sending again is safe, as a replay is refused.
      fail("Your answer could not be sent; please try again. (" + error.message + ")");
      buttons(true);
      return;
    }
    if (response.ok) {
      document.getElementById("error").hidden = true;
      await show(body);
    } else if (response.status === 507 || response.status === 503) {
      // Not saved (a full or failing disk): nothing was recorded, so the same comparison is offered again.
      fail(body.error);
      buttons(true);
    } else if (response.status === 403) {
      // This browser holds no session for the observer (never started here, or the id was released).
      fail(body.error);
    } else {
      // Refused (e.g. answered in another tab): continue from the server's state.
      await show(await fetchState());
    }
  } catch (error) {
    fail("The next comparison could not be shown; please reload the page. (" + error.message + ")");
  } finally {
    busy = false;
  }
}

document.getElementById("choose-left").addEventListener("click", () => choose("left"));
document.getElementById("choose-right").addEventListener("click", () => choose("right"));
document.addEventListener("keydown", (event) => {
  if (event.key === "ArrowLeft") choose("left");
  if (event.key === "ArrowRight") choose("right");
});
fetchState().then(show).catch((error) => fail(error.message));
