// Colour maps as 256-entry RGB lookup tables.
// Weights: diverging orange (negative) - white (0) - blue (positive), as in TensorFlow Playground.
// Activations and images: greyscale, black (0) to white (max), as MNIST is drawn.

function lerp(a, b, t) { return Math.round(a + (b - a) * t); }

function table(fn) {
  const t = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) { const [r, g, b] = fn(i / 255); t[3 * i] = r; t[3 * i + 1] = g; t[3 * i + 2] = b; }
  return t;
}

const NEG = [232, 119, 9], MID = [250, 250, 250], POS = [8, 106, 178];
export const DIVERGING = table((t) => {
  if (t < 0.5) { const u = t / 0.5; return [lerp(NEG[0], MID[0], u), lerp(NEG[1], MID[1], u), lerp(NEG[2], MID[2], u)]; }
  const u = (t - 0.5) / 0.5; return [lerp(MID[0], POS[0], u), lerp(MID[1], POS[1], u), lerp(MID[2], POS[2], u)];
});
export const GREY = table((t) => [t * 255, t * 255, t * 255]);
