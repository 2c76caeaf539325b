// Tally's web UI: while something on the page runs (main[data-live="1"]), fetch the page's
// live part again every second and swap it in; stop when the server says nothing runs.
(function () {
  "use strict";
  const main = document.getElementById("live");
  if (!main) return;
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "1");
  async function refresh() {
    if (main.dataset.live !== "1") return;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        main.innerHTML = await response.text();
        main.dataset.live = response.headers.get("x-tally-live") === "1" ? "1" : "0";
      }
    } catch (error) {
      // The coordinator may be restarting: try again on the next tick.
    }
    if (main.dataset.live === "1") setTimeout(refresh, 1000);
  }
  setTimeout(refresh, 1000);
})();
