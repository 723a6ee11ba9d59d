// A list that grows: by button, by typing + Enter, and on a timer while "auto" is on.
(() => {
  const AUTO_LIMIT = 20;
  const items = document.getElementById("items");
  const count = document.getElementById("item-count");
  const input = document.getElementById("new-item");
  const auto = document.getElementById("auto");
  let next = 1;

  function add(text, kind) {
    const li = document.createElement("li");
    li.id = `item-${items.children.length + 1}`;
    li.className = kind;
    li.textContent = text;
    items.append(li);
    count.textContent = String(items.children.length);
  }

  document.getElementById("add-item").addEventListener("click", () => {
    add(`Item ${next++}`, "manual");
  });

  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    add(text, "custom");
    input.value = "";
  });

  setInterval(() => {
    if (auto.checked && items.children.length < AUTO_LIMIT) add(`Item ${next++}`, "auto");
  }, 1000);
})();
