// The console's only script of its own: htmx swaps nothing when a request fails, so
// without this a failed click (an expired session aside, which htmx redirects) would
// look like a click that did nothing. It shows the server's reason in the banner that
// base.html keeps at the top of <main>.
(function () {
  "use strict";
  function banner() {
    return document.getElementById("request-error");
  }
  function show(text) {
    var box = banner();
    if (!box) {
      return;
    }
    box.querySelector("[data-part=text]").textContent = text;
    box.hidden = false;
  }
  function reason(xhr) {
    // Failed htmx requests get the problem document (RFC 9457) the API answers with.
    try {
      var problem = JSON.parse(xhr.responseText);
      if (problem && problem.detail) {
        return problem.detail;
      }
    } catch (ignored) {
      // not JSON: an HTML error page, whose alert holds the reason
      var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var alert = page.querySelector("main [role=alert]:not(#request-error)");
      if (alert && alert.textContent.trim()) {
        return alert.textContent.trim();
      }
    }
    return "HTTP " + xhr.status;
  }
  document.addEventListener("htmx:responseError", function (event) {
    show(document.body.dataset.failed + " " + reason(event.detail.xhr));
  });
  document.addEventListener("htmx:sendError", function () {
    show(document.body.dataset.unreachable);
  });
  document.addEventListener("htmx:timeout", function () {
    show(document.body.dataset.unreachable);
  });
  // A request that succeeds afterwards makes the old complaint stale.
  document.addEventListener("htmx:afterRequest", function (event) {
    var box = banner();
    if (box && event.detail.successful) {
      box.hidden = true;
    }
  });
})();
