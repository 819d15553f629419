"use strict";
// The session token of this page, sent with every answer: other sites can neither read nor send it.
const token = document.querySelector('meta[name="study-token"]').content;
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

async function show(state) {
  clearInterval(timer);
  document.getElementById("progress").textContent = `Comparison ${Math.min(state.done + 1, state.total)} of ${state.total}`;
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
  for (const id of ["choose-left", "choose-right"]) document.getElementById(id).disabled = false;
}

async function choose(choice) {
  if (busy || trial === null) return;
  busy = true;
  for (const id of ["choose-left", "choose-right"]) document.getElementById(id).disabled = true;
  try {
    const response = await fetch(api + "/answer", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Study-Token": token},
      body: JSON.stringify({trial: trial.id, choice: choice}),
    });
    const state = await response.json();
    if (response.status === 403) {
      // The server restarted since this page was loaded, so its token expired: nothing was recorded.
      fail(state.error);
      return;
    }
    if (!response.ok) {
      // Refused (e.g. answered in another tab): continue from the server's state.
      await show(await (await fetch(api + "/state")).json());
    } else {
      await show(state);
    }
  } catch (error) {
    fail("Your answer could not be sent; please reload the page. (" + error.message + ")");
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
fetch(api + "/state").then((response) => response.json()).then(show).catch((error) => fail(error.message));
