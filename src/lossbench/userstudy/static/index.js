"use strict";
// A file of its own, not an inline script: the Content-Security-Policy allows only the app's files.
document.getElementById("start").addEventListener("submit", (event) => {
  event.preventDefault();
  location.href = "/study/" + encodeURIComponent(document.getElementById("observer").value);
});
