// Where to draw a width×height page so it fits, centred, in a box. Pure.

/**
 * @returns {{scale: number, x: number, y: number}} CSS transform for a top-left origin
 */
export function fitInto(box, page) {
  if (!(page.width > 0 && page.height > 0 && box.width > 0 && box.height > 0)) return { scale: 1, x: 0, y: 0 };
  const scale = Math.min(box.width / page.width, box.height / page.height);
  return {
    scale,
    x: Math.max(0, (box.width - page.width * scale) / 2),
    y: Math.max(0, (box.height - page.height * scale) / 2),
  };
}
