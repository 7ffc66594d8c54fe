// The images pages: sort the rows by one column's score under the chosen test (worst first unless
// reversed). The choice lives in the address's #hash, so that a verdict's link opens the page sorted.
(function () {
  "use strict";
  var table = document.getElementById("images");
  if (!table) {
    return;
  }
  var select = document.getElementById("metric");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  // Each row's scores, parsed once: group -> {metric: value or null}.
  var scores = rows.map(function (row) {
    var byGroup = {};
    Array.prototype.forEach.call(row.querySelectorAll("td[data-scores]"), function (cell) {
      byGroup[cell.getAttribute("data-group")] = JSON.parse(cell.getAttribute("data-scores"));
    });
    return byGroup;
  });

  function hashState() {
    var state = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var pair = part.split("=");
      if (pair.length === 2) {
        state[decodeURIComponent(pair[0])] = decodeURIComponent(pair[1]);
      }
    });
    return state;
  }

  function value(index, group, metric) {
    var mine = scores[index][group];
    var found = mine ? mine[metric] : null;
    return typeof found === "number" ? found : null;
  }

  function apply() {
    var state = hashState();
    var metric = state.metric || table.getAttribute("data-default-metric");
    select.value = metric;
    rows.forEach(function (row) {
      Array.prototype.forEach.call(row.querySelectorAll("td[data-scores]"), function (cell) {
        var found = JSON.parse(cell.getAttribute("data-scores"))[metric];
        cell.querySelector(".score").textContent = typeof found === "number" ? found.toFixed(2) : "-";
      });
    });
    var order = rows.map(function (row, index) { return index; });
    if (state.sort) {
      var sign = state.order === "desc" ? -1 : 1;
      order.sort(function (a, b) {
        var x = value(a, state.sort, metric), y = value(b, state.sort, metric);
        if (x === null || y === null) {
          return (x === null) - (y === null) || a - b;   // images without a score last
        }
        return sign * (x - y) || a - b;
      });
    }
    order.forEach(function (index) { body.appendChild(rows[index]); });
    Array.prototype.forEach.call(table.querySelectorAll("button.sort"), function (button) {
      var sorted = button.getAttribute("data-group") === state.sort;
      button.classList.toggle("sorted", sorted);
      button.setAttribute("data-order", sorted ? (state.order || "asc") : "");
    });
  }

  function go(state) {
    location.hash = Object.keys(state).map(function (key) {
      return encodeURIComponent(key) + "=" + encodeURIComponent(state[key]);
    }).join("&");
  }

  select.addEventListener("change", function () {
    var state = hashState();
    state.metric = select.value;
    go(state);
  });
  Array.prototype.forEach.call(table.querySelectorAll("button.sort"), function (button) {
    button.addEventListener("click", function () {
      var state = hashState();
      var group = button.getAttribute("data-group");
      state.order = state.sort === group && state.order !== "desc" ? "desc" : "asc";
      state.sort = group;
      state.metric = state.metric || select.value;
      go(state);
    });
  });
  window.addEventListener("hashchange", apply);
  apply();
}());
