// The engine's field tables (engine/spec.py LAYER_FIELDS, TRAIN_FIELDS, SCHEDULE_FIELDS, ...),
// as GET /api/spec serves them: main.js calls setSpec() at start-up, before the design form is
// drawn. Each field is {kind, required, default, min?, max?, choices?}. The server validates
// (POST /api/models/validate); the table decides which inputs to show and their placeholders.
// What stays here is presentation only: titles, labels, a new layer's starting values.

export const spec = {
  layers: {}, layer_aliases: {}, train: {}, schedules: {}, dataset: {}, datasets: {},
  init_types: [], optimizers: [], losses: [], limits: {},
};

/** Take the answer of GET /api/spec. */
export function setSpec(s) { Object.assign(spec, s); }

const LAYER_TITLES = {
  dense: "Dense", conv2d: "Conv2D", maxpool2d: "MaxPool2D", avgpool2d: "AvgPool2D", flatten: "Flatten",
  relu: "ReLU", sigmoid: "Sigmoid", tanh: "Tanh", leaky_relu: "Leaky ReLU", dropout: "Dropout", batchnorm: "BatchNorm",
};

const FIELD_LABELS = {
  units: "Units", filters: "Filters", kernel_size: "Kernel size", stride: "Stride", padding: "Padding",
  use_bias: "Bias", init: "Init", pool_size: "Pool size", alpha: "Alpha", rate: "Rate",
  momentum: "BN momentum", epsilon: "Epsilon",
};

const OPTIMIZER_TITLES = { sgd: "SGD", adam: "Adam", rmsprop: "RMSprop" };
const SCHEDULE_TITLES = {
  constant: "Constant", step: "Step (x gamma per epoch)", exponential: "Exponential (x gamma per epoch)",
  cosine: "Cosine", loss: "By loss (table)",
};

const LOSS_TITLES = { cross_entropy: "Cross-entropy", mse: "Quadratic (MSE)" };
export const lossOptions = () => spec.losses.map((l) => [l, LOSS_TITLES[l] || l]);

/** [[type, title]] for every layer type the engine knows, in its order. */
export const layerTypes = () => Object.keys(spec.layers).map((t) => [t, LAYER_TITLES[t] || t]);
/** The fields of a layer type ({} for one the engine does not know). */
export const layerFields = (type) => spec.layers[type] || {};
export const fieldLabel = (name) => FIELD_LABELS[name] || name.replace(/_/g, " ");
export const optimizerOptions = () => spec.optimizers.map((o) => [o, OPTIMIZER_TITLES[o] || o]);
export const scheduleOptions = () => Object.keys(spec.schedules).map((s) => [s, SCHEDULE_TITLES[s] || s]);
export const initTypes = () => [...spec.init_types].sort();

/** The engine's default of a train field ("lr") or schedule field ("schedule.gamma"), as text
 *  for a placeholder; "" when it has none. */
export function trainDefault(key) {
  const [a, b] = key.split(".");
  let rule = null;
  if (!b) rule = spec.train[a];
  else if (a === "schedule") rule = Object.values(spec.schedules).map((f) => f[b]).find(Boolean);
  return rule && rule.default != null && typeof rule.default !== "object" ? String(rule.default) : "";
}

/** A new layer of a type with sensible starting values for its required fields. */
export function newLayer(type) {
  const starts = { dense: { units: 64 }, conv2d: { filters: 8, kernel_size: 3, padding: 1 }, maxpool2d: { pool_size: 2 }, avgpool2d: { pool_size: 2 }, dropout: { rate: 0.5 }, leaky_relu: { alpha: 0.01 } };
  const fields = layerFields(type);
  const layer = { type };
  for (const [k, v] of Object.entries(starts[type] || {})) if (k in fields) layer[k] = v;
  return layer;
}
