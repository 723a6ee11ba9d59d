// The sidebar's start form: a URL and optional workflow steps → POST /sessions; "Start demo".
import { startDemo, startSession } from "./api.js";
import { h } from "./dom.js";

const STEPS_PLACEHOLDER = '[{"action": "click", "selector": "a"}]';

/** Parses the steps textarea: empty means no steps; anything else must be a JSON array. */
export function parseSteps(text) {
  if (!text.trim()) return [];
  let steps;
  try {
    steps = JSON.parse(text);
  } catch (error) {
    throw new Error(`Steps are not valid JSON: ${error.message}`);
  }
  if (!Array.isArray(steps)) throw new Error("Steps must be a JSON array of step objects.");
  return steps;
}

export class StartForm {
  #url;
  #steps;
  #error;
  #buttons;
  #onStarted;

  /**
   * @param {HTMLElement} root an empty element the form fills
   * @param {{onStarted: (session: object) => void}} options called with the new SessionInfo
   */
  constructor(root, { onStarted }) {
    this.#onStarted = onStarted;
    this.#url = h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com", autocomplete: "url" });
    this.#steps = h("textarea", { name: "steps", rows: 4, spellcheck: "false", placeholder: STEPS_PLACEHOLDER });
    this.#error = h("p", { class: "inline-error", role: "alert", hidden: true });
    const start = h("button", { type: "submit", class: "button button--primary" }, "Start session");
    const demo = h("button", { type: "button", class: "button", onclick: () => this.#run(() => startDemo()) }, "Start demo");
    this.#buttons = [start, demo];
    const form = h(
      "form",
      { class: "start-form", onsubmit: (event) => this.#submit(event) },
      h("label", {}, h("span", { text: "URL" }), this.#url),
      h("label", {}, h("span", {}, "Steps ", h("small", { class: "muted", text: "optional JSON array" })), this.#steps),
      this.#error,
      h("div", { class: "form-actions" }, start, demo),
    );
    root.replaceChildren(form);
  }

  #submit(event) {
    event.preventDefault();
    let steps;
    try {
      steps = parseSteps(this.#steps.value);
    } catch (error) {
      this.#showError(error.message);
      return;
    }
    this.#run(() => startSession({ url: this.#url.value.trim(), steps }));
  }

  async #run(call) {
    this.#showError("");
    for (const button of this.#buttons) button.disabled = true;
    try {
      const session = await call();
      if (!session?.id) throw new Error("the server did not return a session id");
      this.#onStarted(session);
    } catch (error) {
      this.#showError(error.message);
    } finally {
      for (const button of this.#buttons) button.disabled = false;
    }
  }

  #showError(message) {
    this.#error.textContent = message;
    this.#error.hidden = !message;
  }
}
