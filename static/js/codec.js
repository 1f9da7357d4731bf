// EncodedArray (engine/events.py encode_array) -> typed arrays.
// {"__array__": "uint8", "shape": [...], "min": lo, "max": hi, "b64": "..."}
// value ~ min + q * (max - min) / 255

/** Decode to {shape, data: Float32Array, min, max, q: Uint8Array}. Null stays null. */
export function decodeArray(enc) {
  if (!enc || enc.__array__ !== "uint8") return null;
  const bin = atob(enc.b64);
  const q = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) q[i] = bin.charCodeAt(i);
  const lo = enc.min ?? 0, hi = enc.max ?? 0;
  const scale = (hi - lo) / 255;
  const data = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) data[i] = lo + q[i] * scale;
  return { shape: enc.shape.slice(), data, q, min: lo, max: hi };
}

/** Row-major index helper: strides of a shape. */
export function strides(shape) {
  const s = new Array(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}
