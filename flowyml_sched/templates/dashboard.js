// Shows each <time class="viewer" datetime="...Z"> in the viewer's own zone, and names that
// zone in each .viewer-zone; without this script the pages show those instants in UTC.
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23", timeZoneName: "short"
  });
  function text(date) {
    var parts = {};
    format.formatToParts(date).forEach(function (part) { parts[part.type] = part.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute +
      " " + parts.timeZoneName;
  }
  document.querySelectorAll("time.viewer").forEach(function (element) {
    var date = new Date(element.getAttribute("datetime"));
    if (isNaN(date.getTime())) { return; }
    element.title = element.textContent;
    element.textContent = text(date);
  });
  var zone = format.resolvedOptions().timeZone;
  document.querySelectorAll(".viewer-zone").forEach(function (element) { element.textContent = zone; });
}());
