// What the layer editor offers for each layer type: the fields of engine/spec.py LAYER_FIELDS
// (kind, default, min, max). The server validates (POST /api/models/validate); this table only
// decides which inputs to show, so a mismatch shows up as a server message, never a wrong run.

export const LAYER_FIELDS = {
  dense: { units: ["int", null, 1, 65536], use_bias: ["bool", true], init: ["init", null] },
  conv2d: {
    filters: ["int", null, 1, 1024], kernel_size: ["int", null, 1, 64], stride: ["int", 1, 1, 64],
    padding: ["int", 0, 0, 64], use_bias: ["bool", true], init: ["init", null],
  },
  maxpool2d: { pool_size: ["int", 2, 1, 64], stride: ["int", null, 1, 64] },
  avgpool2d: { pool_size: ["int", 2, 1, 64], stride: ["int", null, 1, 64] },
  flatten: {},
  relu: {}, sigmoid: {}, tanh: {},
  leaky_relu: { alpha: ["float", 0.01, 0, 1] },
  dropout: { rate: ["float", 0.5, 0, 0.99] },
  batchnorm: { momentum: ["float", 0.9, 0, 0.9999], epsilon: ["float", 1e-5, 1e-12, 1] },
};

export const LAYER_TITLES = {
  dense: "Dense", conv2d: "Conv2D", maxpool2d: "MaxPool2D", avgpool2d: "AvgPool2D", flatten: "Flatten",
  relu: "ReLU", sigmoid: "Sigmoid", tanh: "Tanh", leaky_relu: "Leaky ReLU", dropout: "Dropout", batchnorm: "BatchNorm",
};

export const FIELD_LABELS = {
  units: "Units", filters: "Filters", kernel_size: "Kernel size", stride: "Stride", padding: "Padding",
  use_bias: "Bias", init: "Init", pool_size: "Pool size", alpha: "Alpha", rate: "Rate",
  momentum: "BN momentum", epsilon: "Epsilon",
};

/** A new layer of a type with sensible starting values for its required fields. */
export function newLayer(type) {
  const starts = { dense: { units: 64 }, conv2d: { filters: 8, kernel_size: 3, padding: 1 }, maxpool2d: { pool_size: 2 }, avgpool2d: { pool_size: 2 }, dropout: { rate: 0.5 }, leaky_relu: { alpha: 0.01 } };
  return { type, ...(starts[type] || {}) };
}

export const INIT_TYPES = ["glorot", "he", "normal", "uniform", "xavier"];
export const OPTIMIZERS = [["sgd", "SGD"], ["adam", "Adam"], ["rmsprop", "RMSprop"]];
export const SCHEDULES = [["constant", "Constant"], ["step", "Step (x gamma per epoch)"], ["exponential", "Exponential (x gamma per epoch)"], ["cosine", "Cosine"], ["loss", "By loss (table)"]];
