// Reconnect delays: exponential with "equal jitter", so viewers dropped together
// by a restarting gateway do not all come back in the same instant.

/**
 * @param {number} attempt 0 for the first retry after a healthy connection
 * @returns {number} milliseconds to wait
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 15_000, random = Math.random } = {}) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}
