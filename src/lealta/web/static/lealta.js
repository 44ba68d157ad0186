// Small enhancements only: every page works without JavaScript.
// Forms with data-confirm ask before submitting (e.g. redeem, revoke, rollback).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// "Go back" on the error page: its link leads to the area's home; with a history, go back.
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("[data-history-back]") : null;
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});

// Fields with data-select-on-focus select their whole value (e.g. a new API key to copy).
document.addEventListener("focusin", function (event) {
  var field = event.target;
  if (field.hasAttribute && field.hasAttribute("data-select-on-focus")) {
    field.select();
  }
});
