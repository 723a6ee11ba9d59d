// The cross-origin widget: a clock and tick counter, plus a click log.
(() => {
  const clock = document.getElementById("widget-clock");
  const ticks = document.getElementById("widget-ticks");
  const button = document.getElementById("widget-button");
  const log = document.getElementById("widget-log");
  let count = 0;
  let clicks = 0;

  function tick() {
    clock.textContent = new Date().toLocaleTimeString("en-GB", { hour12: false });
    ticks.textContent = String(count++);
  }
  tick();
  setInterval(tick, 1000);

  button.addEventListener("click", () => {
    clicks += 1;
    const line = document.createElement("li");
    line.id = `widget-click-${clicks}`;
    line.textContent = `Widget clicked ${clicks}`;
    log.prepend(line);
    // Keep the widget's height steady however often it is clicked.
    while (log.children.length > 4) log.lastElementChild.remove();
  });
})();
