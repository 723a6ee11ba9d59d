// Taking control of the page from the viewer (protocol 1.1, docs/protocol.md "Taking
// control"): who is in control, the Take control / Hand back button, and, while this
// viewer is in control, the person's mouse, wheel and keyboard on the replayed page sent
// to the real one in its own CSS pixels.
//
// The replay is rrweb's iframe at the recorded page's viewport size, scaled (and centred)
// by fit.js; its scroll follows the page's, so a point on it is a point of the page's
// viewport once the scale is taken out (`pagePoint`). Nested iframes sit inside it where
// they sit in the page, and the real page's hit-testing finds them from the top. A
// transparent layer over the replay takes the input, so nothing reaches the replayed
// document itself (its scripts are off; its links would navigate the replay).
// Not handled: touch and pinch, drag and drop of files, the clipboard beyond what the
// keyboard types, native pop-ups the page opens (a <select>'s list, date pickers: they
// are not in the DOM, so the replay cannot show them; arrow keys still work), IME
// composition (the composed text arrives as its characters).

const BUTTONS = ["left", "middle", "right"];
const LINE_PX = 16; // a wheel's line, in pixels (deltaMode 1)

/**
 * Where a point of the viewer's window lands on the recorded page.
 * @param {{left:number, top:number, width:number, height:number}} rect the replay
 *   iframe's on-screen box (getBoundingClientRect: scaled)
 * @param {{width:number, height:number}} page the recorded viewport (the iframe's CSS size)
 * @returns {{x:number, y:number, inside:boolean}}
 */
export function pagePoint(clientX, clientY, rect, page) {
  const scale = page.width > 0 ? rect.width / page.width : 1;
  const x = (clientX - rect.left) / (scale || 1);
  const y = (clientY - rect.top) / (scale || 1);
  return { x: round(x), y: round(y), inside: x >= 0 && y >= 0 && x < page.width && y < page.height };
}

/** A wheel event's movement in pixels. */
export function wheelDelta(event) {
  const unit = event.deltaMode === 1 ? LINE_PX : event.deltaMode === 2 ? 800 : 1;
  return { dx: round(event.deltaX * unit), dy: round(event.deltaY * unit) };
}

function round(value) {
  return Math.round(value * 10) / 10;
}

/**
 * The control bar and, while this viewer holds control, the input layer over the replay.
 */
export class TakeoverControl {
  #bar;
  #stage;
  #player;
  #send;
  #seq;
  #layer = null;
  #state = { holder: null, you: false, canTake: false, refusal: "" };
  #pendingMove = null;
  #moveFrame = 0;
  #label;
  #button;
  #note;

  /**
   * @param {HTMLElement} bar where the control state and button go
   * @param {HTMLElement} stage the live player's stage (#player)
   * @param {{iframeElement(): HTMLIFrameElement|null, pageSize: object|null}} player
   * @param {(message: object) => boolean} send sends a message on the stream's socket
   * @param {() => (number|null)} seq the newest batch applied (what the person sees)
   */
  constructor(bar, stage, player, send, seq) {
    this.#bar = bar;
    this.#stage = stage;
    this.#player = player;
    this.#send = send;
    this.#seq = seq;
    this.#label = document.createElement("span");
    this.#label.className = "control-holder";
    this.#button = document.createElement("button");
    this.#button.type = "button";
    this.#button.className = "button button--small button--on-dark";
    this.#button.id = "take-control";
    this.#button.addEventListener("click", () => this.#toggle());
    this.#note = document.createElement("span");
    this.#note.className = "control-note";
    bar.replaceChildren(this.#label, this.#button, this.#note);
    this.#render();
  }

  /** {holder, you, canTake, refusal} as the server last said. */
  get state() {
    return { ...this.#state };
  }

  /** A message of the stream: control, control_refused, input_refused (others ignored). */
  onMessage(message) {
    if (message.type === "control") {
      this.#state = { holder: message.holder ?? null, you: Boolean(message.you), canTake: Boolean(message.can_take), refusal: "" };
      if (this.#state.you) this.#attach();
      else this.#detach();
    } else if (message.type === "control_refused") {
      this.#state.refusal = message.holder ? `${message.holder} is in control` : message.message;
    } else if (message.type === "input_refused") {
      this.#state.refusal = message.reason === "behind" ? "catching up with the page…" : message.message;
    } else {
      return;
    }
    this.#render();
  }

  /** The stream is gone or switched: nothing is held from here. */
  reset() {
    this.#detach();
    this.#state = { holder: null, you: false, canTake: false, refusal: "" };
    this.#render();
  }

  #toggle() {
    this.#state.refusal = "";
    this.#send({ type: this.#state.you ? "hand_back" : "take_control" });
    this.#render();
  }

  #render() {
    const { holder, you, canTake, refusal } = this.#state;
    this.#bar.hidden = !holder && !canTake;
    this.#label.textContent = you ? "You are in control" : holder ? `${holder} is in control` : "The workflow drives the page";
    this.#label.dataset.holder = holder ?? "";
    this.#button.hidden = !canTake;
    this.#button.textContent = you ? "Hand back" : "Take control";
    this.#button.disabled = !you && Boolean(holder);
    this.#note.textContent = refusal;
    this.#stage.classList.toggle("player-stage--controlled", you);
  }

  // -- input -------------------------------------------------------------------------------

  #attach() {
    if (this.#layer) return;
    const layer = document.createElement("div");
    layer.className = "control-layer";
    layer.tabIndex = 0;
    layer.setAttribute("aria-label", "The page: your mouse and keyboard go to it");
    layer.addEventListener("pointermove", (e) => this.#onMove(e));
    layer.addEventListener("pointerdown", (e) => this.#onButton(e, "down"));
    layer.addEventListener("pointerup", (e) => this.#onButton(e, "up"));
    layer.addEventListener("wheel", (e) => this.#onWheel(e), { passive: false });
    layer.addEventListener("contextmenu", (e) => e.preventDefault());
    layer.addEventListener("keydown", (e) => this.#onKey(e, "down"));
    layer.addEventListener("keyup", (e) => this.#onKey(e, "up"));
    // The replay focuses what the page focused (rrweb's triggerFocus), which takes the
    // keyboard into its iframe: the layer takes it back. Focus that moves elsewhere in the
    // viewer (the sidebar's fields) stays there.
    layer.addEventListener("focusout", (e) => {
      const next = e.relatedTarget;
      if (next && !(next instanceof HTMLIFrameElement && this.#stage.contains(next))) return;
      setTimeout(() => {
        if (this.#layer === layer && document.hasFocus()) layer.focus({ preventScroll: true });
      }, 0);
    });
    this.#stage.append(layer);
    this.#layer = layer;
    layer.focus();
  }

  #detach() {
    cancelAnimationFrame(this.#moveFrame);
    this.#moveFrame = 0;
    this.#pendingMove = null;
    this.#layer?.remove();
    this.#layer = null;
  }

  #point(event) {
    const iframe = this.#player.iframeElement();
    const page = this.#player.pageSize;
    if (!iframe || !page) return null;
    return pagePoint(event.clientX, event.clientY, iframe.getBoundingClientRect(), page);
  }

  // Moves go at most once an animation frame, the newest; anything else goes at once,
  // after the move before it.
  #onMove(event) {
    const at = this.#point(event);
    if (!at?.inside) return;
    this.#pendingMove = { kind: "mouse", action: "move", x: at.x, y: at.y };
    this.#moveFrame ||= requestAnimationFrame(() => {
      this.#moveFrame = 0;
      this.#flushMove();
    });
  }

  #flushMove() {
    const move = this.#pendingMove;
    this.#pendingMove = null;
    if (move) this.#sendEvents([move]);
  }

  #onButton(event, action) {
    event.preventDefault();
    this.#layer?.focus();
    const at = this.#point(event);
    if (!at || (!at.inside && action === "down")) return;
    if (action === "down") this.#layer?.setPointerCapture?.(event.pointerId);
    const button = BUTTONS[event.button] ?? "left";
    this.#pendingMove = null;
    this.#sendEvents([{ kind: "mouse", action, x: at.x, y: at.y, button, clicks: Math.min(3, Math.max(1, event.detail || 1)) }]);
  }

  #onWheel(event) {
    event.preventDefault();
    const at = this.#point(event);
    if (!at?.inside) return;
    this.#flushMove();
    this.#sendEvents([{ kind: "wheel", x: at.x, y: at.y, ...wheelDelta(event) }]);
  }

  #onKey(event, action) {
    if (event.isComposing) return;
    // Everything goes to the page, Tab and Enter included, but the browser's own reload
    // and the like (with Ctrl/Meta) stay with the browser.
    if (!(event.metaKey && ["r", "l", "w", "t"].includes(event.key))) event.preventDefault();
    if (!event.key || event.key === "Unidentified" || event.key === "Dead" || event.key.length > 32) return;
    this.#flushMove();
    this.#sendEvents([{ kind: "key", action, key: event.key, code: event.code || null }]);
  }

  #sendEvents(events) {
    this.#send({ type: "input", seq: this.#seq(), events });
  }
}
