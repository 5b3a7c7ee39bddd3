// Policy editor, progressive enhancement only: the form works without this file (spare rows are simply shown).
// With it: spare rules and conditions stay hidden until "+ Rule" / "+ Condition", rules move up and down (the
// hidden order fields follow), and the comparison list offers only what fits the chosen fact.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function renumber(list) {
    list.querySelectorAll("[data-rule]").forEach(function (rule, i) {
      var pos = rule.querySelector("[data-position]");
      if (pos) pos.value = String(i + 1);
    });
  }

  function fitOps(row) {
    var fact = row.querySelector("[data-fact]");
    var op = row.querySelector("[data-op]");
    if (!fact || !op) return;
    var chosen = fact.options[fact.selectedIndex];
    var numeric = chosen && chosen.dataset.numeric === "1";
    var any = !fact.value;
    Array.prototype.forEach.call(op.options, function (o) {
      var fits = any || (numeric ? o.dataset.numeric === "1" : o.dataset.text === "1");
      o.hidden = !fits;
      o.disabled = !fits;
    });
    if (op.selectedOptions.length && op.selectedOptions[0].disabled) {
      var first = Array.prototype.find.call(op.options, function (o) { return !o.disabled; });
      if (first) op.value = first.value;
    }
  }

  function setUp(form) {
    var list = form.querySelector(".rule-list");
    if (!list) return;
    var hasProblems = !!form.querySelector(".problem-summary");

    list.querySelectorAll("[data-rule]").forEach(function (rule) {
      var spares = rule.querySelectorAll(".cond-row.is-spare");
      var addCond = rule.querySelector("[data-add-cond]");
      // keep one spare condition visible on rules that have none yet, hide the rest behind the button
      var visibleSpare = rule.querySelectorAll(".cond-row:not(.is-spare)").length === 0 ? 1 : 0;
      spares.forEach(function (row, i) { if (i >= visibleSpare) row.classList.add("is-hidden"); });
      if (addCond) {
        addCond.hidden = false;
        addCond.addEventListener("click", function () {
          var next = rule.querySelector(".cond-row.is-hidden");
          if (next) { next.classList.remove("is-hidden"); next.querySelector("select").focus(); }
          if (!rule.querySelector(".cond-row.is-hidden")) addCond.hidden = true;
        });
      }
      rule.querySelectorAll("[data-move]").forEach(function (btn) {
        btn.hidden = false;
        btn.addEventListener("click", function () {
          if (btn.dataset.move === "up" && rule.previousElementSibling) {
            list.insertBefore(rule, rule.previousElementSibling);
          } else if (btn.dataset.move === "down" && rule.nextElementSibling) {
            list.insertBefore(rule.nextElementSibling, rule);
          }
          renumber(list);
          btn.focus();
        });
      });
      rule.querySelectorAll("[data-cond]").forEach(function (row) {
        fitOps(row);
        var fact = row.querySelector("[data-fact]");
        if (fact) fact.addEventListener("change", function () { fitOps(row); });
      });
    });

    var spareRule = list.querySelector("[data-rule].is-spare");
    var addRule = form.querySelector("[data-add-rule]");
    if (spareRule && addRule && !hasProblems && list.querySelectorAll("[data-rule]").length > 1) {
      spareRule.classList.add("is-hidden");
      addRule.hidden = false;
      addRule.addEventListener("click", function () {
        spareRule.classList.remove("is-hidden");
        addRule.hidden = true;
        var first = spareRule.querySelector("input[name$='.rule_id']");
        if (first) first.focus();
      });
    }
  }

  document.querySelectorAll("[data-editor]").forEach(setUp);
})();
