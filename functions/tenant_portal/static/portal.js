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

// The onboarding's waiting page: asks every few seconds whether Microsoft confirms the consent (GET
// /onboard/wait as JSON) and goes on once it does, or to the page that says why not after the wait (the
// page also asks again without JavaScript, through a refresh in <noscript>).
(function () {
  "use strict";
  var box = document.querySelector("[data-wait]");
  if (!box) { return; }
  var url = box.getAttribute("data-wait");
  var interval = parseInt(box.getAttribute("data-interval"), 10) || 5000;
  function check() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (answer.ok && answer.body.status === "awaiting-consent") {
          window.setTimeout(check, interval);
        } else if (answer.ok && answer.body.location) {
          window.location.assign(answer.body.location);
        } else {
          window.location.assign(url);  // the refusal, as a page
        }
      })
      .catch(function () { window.setTimeout(check, interval); });
  }
  window.setTimeout(check, interval);
}());
