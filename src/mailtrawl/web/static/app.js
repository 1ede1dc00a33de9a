// mailtrawl dashboard: the one script of ours. It adds the session's CSRF token (from
// <meta name="csrf-token">) to every htmx request, as the X-CSRF-Token header; forms carry
// the same token in a hidden csrf_token field. No inline scripts: the CSP forbids them.
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }
  function addHeader(headers) {
    var token = csrfToken();
    if (token && headers) { headers["X-CSRF-Token"] = token; }
  }
  // htmx 4 names the event htmx:config:request; htmx 2 named it htmx:configRequest.
  document.addEventListener("htmx:config:request", function (event) {
    var ctx = event.detail && event.detail.ctx;
    if (ctx && ctx.request) { addHeader(ctx.request.headers); }
  });
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail) { addHeader(event.detail.headers); }
  });
  // Buttons with data-confirm ask before their form is sent.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var message = (button && button.getAttribute("data-confirm")) ||
      (event.target && event.target.getAttribute && event.target.getAttribute("data-confirm"));
    if (message && !window.confirm(message)) { event.preventDefault(); }
  }, true);
})();
