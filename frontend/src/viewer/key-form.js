// The API key panel: shown when the gateway answered 401. The key stays in this tab's
// sessionStorage (api.js); a viewer link needs none.
import { apiKey, setApiKey } from "./api.js";
import { h } from "./dom.js";

export class KeyForm {
  #root;
  #input;

  /**
   * @param {HTMLElement} root the panel (hidden until a key is needed)
   * @param {HTMLElement} body an empty element the form fills
   * @param {{onSaved: () => void}} options called once a key was entered
   */
  constructor(root, body, { onSaved }) {
    this.#root = root;
    this.#input = h("input", { type: "password", name: "api-key", autocomplete: "off", placeholder: "API key" });
    const form = h(
      "form",
      { class: "start-form", onsubmit: (event) => {
        event.preventDefault();
        setApiKey(this.#input.value.trim());
        this.#input.value = "";
        this.show(false);
        onSaved();
      } },
      h("p", { class: "muted", text: "This gateway needs an API key to list and start sessions. It is kept in this tab only." }),
      h("label", {}, h("span", { text: "Key" }), this.#input),
      h("div", { class: "form-actions" }, h("button", { type: "submit", class: "button button--primary" }, "Use key")),
    );
    body.replaceChildren(form);
  }

  /** Shows the panel (a call answered 401) or hides it. */
  show(needed) {
    if (needed && apiKey()) setApiKey(null); // the key we had was refused
    this.#root.hidden = !needed;
  }
}
