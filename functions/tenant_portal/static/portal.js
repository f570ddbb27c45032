// Follows a deletion receipt on its progress page (the page also refreshes itself without JavaScript).
(function () {
  "use strict";
  var box = document.querySelector("[data-poll]");
  if (!box) { return; }
  var status = document.getElementById("receipt-status");
  function poll() {
    fetch(box.getAttribute("data-poll"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (receipt) {
        if (receipt && receipt.status === "completed") {
          status.textContent = box.getAttribute("data-done-text");
          window.location.reload();
          return;
        }
        window.setTimeout(poll, 1500);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
}());
