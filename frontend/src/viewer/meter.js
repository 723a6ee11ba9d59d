// Sliding time windows for the stats panel: rates (sum per second) and medians.
// Pure: no DOM; `now` is injectable for tests.

export class SlidingWindow {
  #samples = []; // [time, value]
  #windowMs;
  #now;
  #since;

  constructor({ windowMs = 5000, now = () => performance.now() } = {}) {
    this.#windowMs = windowMs;
    this.#now = now;
    this.#since = now();
  }

  add(value) {
    this.#samples.push([this.#now(), value]);
    this.#prune();
  }

  reset() {
    this.#samples = [];
    this.#since = this.#now();
  }

  /** Sum of the window's values per second; a young window divides by its age. */
  rate() {
    this.#prune();
    const spanMs = Math.min(this.#windowMs, Math.max(this.#now() - this.#since, 1000));
    let sum = 0;
    for (const [, value] of this.#samples) sum += value;
    return (sum * 1000) / spanMs;
  }

  /** Median of the window's values, or null when it is empty. */
  median() {
    this.#prune();
    if (!this.#samples.length) return null;
    const values = this.#samples.map(([, value]) => value).sort((a, b) => a - b);
    const mid = values.length >> 1;
    return values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  }

  #prune() {
    const oldest = this.#now() - this.#windowMs;
    let drop = 0;
    while (drop < this.#samples.length && this.#samples[drop][0] < oldest) drop++;
    if (drop) this.#samples.splice(0, drop);
  }
}
