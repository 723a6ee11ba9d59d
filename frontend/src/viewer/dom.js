// A tiny element builder. Text goes in as text nodes, never as HTML, because
// session names and URLs come from pages we do not control.

/**
 * h("button", {class: "stop", onclick: fn, title: "Stop"}, "Stop")
 * Props: `class`, `text`, `on<event>` handlers, `dataset`, booleans, other attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}
