// Runs real TensorFlow.js (pure-JS CPU backend) on a request read as JSON from stdin and
// writes the result as JSON to the file named by argv[2] (stdout carries TF.js's banner).
//
// Request (every key optional except one of `model_dir` / `build`):
//   tfjs_dir       folder holding node_modules/@tensorflow/tfjs (or that node_modules folder)
//   model_dir      folder with model.json + shards: loaded with tf.loadLayersModel through
//                  tf.io.http with a fetch that reads files (TF.js's own manifest/shard logic)
//   build          {layers: [{type: "dense", config: {units: 4, inputShape: [3]}}, ...]}:
//                  tf.sequential of tf.layers[type](config) (camelCase, as a TF.js user writes)
//   set_weights    {name: array}: assigned after load/build (names as model.weights originalName)
//   compile        {optimizer: "sgd" | {class_name: "Adam", config: {learningRate: ...}},
//                   loss: "categoricalCrossentropy", metrics: [...]} ; omitted: a loaded model
//                   keeps the compile that TF.js made from its trainingConfig
//   predict        [array, ...]: model.predict of each, before training
//   train          [{x: array, y: array}, ...]: one trainOnBatch per entry
//   fit            {x, y, batchSize, epochs}: model.fit with shuffle false (after `train`)
//   predict_after  [array, ...]: model.predict of each, after training
//   save_dir       save through an IOHandler writing model.json + weights.bin there
//   include_optimizer  save with {includeOptimizer: true}
// Arrays: {dtype: "float32"|"int32", shape: [...], b64: "..."} (little-endian) or
//         {dtype, shape, file: "/abs/path.bin"}.
// Result: {predictions, losses (per train step: [loss, ...metrics]), fit_history,
//          predictions_after, weights (name -> array, after training), summary_rows
//          ([name, className, outputShape, nParams]), summary_lines, trainable_counts,
//          metrics_names, training_config}

const fs = require('fs');
const path = require('path');

function readStdin() {
  return fs.readFileSync(0, 'utf8');
}

function loadTf(dir) {
  const candidates = [];
  if (dir) {
    candidates.push(path.join(dir, '@tensorflow', 'tfjs'));
    candidates.push(path.join(dir, 'node_modules', '@tensorflow', 'tfjs'));
  }
  candidates.push('@tensorflow/tfjs');
  for (const c of candidates) {
    try {
      return require(c);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  throw new Error('cannot find @tensorflow/tfjs in ' + JSON.stringify(candidates));
}

function decode(tf, a) {
  const bytes = a.file ? fs.readFileSync(a.file) : Buffer.from(a.b64, 'base64');
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const dtype = a.dtype || 'float32';
  const values = dtype === 'int32' ? new Int32Array(buf) : new Float32Array(buf);
  return tf.tensor(values, a.shape, dtype);
}

function encode(t) {
  const data = t.dataSync();
  const dtype = t.dtype === 'int32' ? 'int32' : 'float32';
  const typed = dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data);
  return {dtype, shape: t.shape, b64: Buffer.from(typed.buffer).toString('base64')};
}

function fileFetch(url) {
  const file = decodeURIComponent(new URL(url).pathname);
  if (!fs.existsSync(file)) {
    return Promise.resolve(new Response(null, {status: 404, statusText: 'Not Found: ' + file}));
  }
  const bytes = fs.readFileSync(file);
  const headers = file.endsWith('.json') ? {'Content-Type': 'application/json'} : {};
  return Promise.resolve(new Response(bytes, {status: 200, headers}));
}

function fileSaver(dir) {
  return {
    save: async (artifacts) => {
      fs.mkdirSync(dir, {recursive: true});
      let data = artifacts.weightData;
      if (Array.isArray(data)) data = tf.io.CompositeArrayBuffer.join(data);
      fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(data));
      const modelJson = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs}],
      };
      if (artifacts.trainingConfig != null) modelJson.trainingConfig = artifacts.trainingConfig;
      fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(modelJson));
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    },
  };
}

function optimizerFrom(spec) {
  if (typeof spec === 'string' || spec == null) return spec || 'sgd';
  const cls = tf.serialization.SerializationMap.getMap().classNameMap[spec.class_name];
  if (!cls) throw new Error('unknown optimizer class ' + spec.class_name);
  return cls[1](cls[0], spec.config || {});
}

let tf;

async function main() {
  const request = JSON.parse(readStdin());
  tf = loadTf(request.tfjs_dir || process.env.TRAINCTL_TFJS_DIR);
  await tf.setBackend('cpu');
  const result = {};
  let model;
  if (request.model_dir) {
    const url = 'http://trainctl.local' + path.resolve(request.model_dir, 'model.json').split(path.sep).map(encodeURIComponent).join('/');
    model = await tf.loadLayersModel(tf.io.http(url, {fetchFunc: fileFetch}));
  } else {
    model = tf.sequential();
    for (const item of request.build.layers) {
      const factory = tf.layers[item.type];
      if (!factory) throw new Error('tf.layers has no ' + item.type);
      model.add(factory(item.config || {}));
    }
  }
  if (request.set_weights) {
    for (const w of model.weights) {
      const a = request.set_weights[w.originalName];
      if (a) w.write(decode(tf, a));
    }
  }
  if (request.compile) {
    model.compile({
      optimizer: optimizerFrom(request.compile.optimizer),
      loss: request.compile.loss,
      metrics: request.compile.metrics || [],
    });
  }
  const lines = [];
  model.summary(250, undefined, (...args) => lines.push(args.join(' ')));
  result.summary_lines = lines;
  result.summary_rows = model.layers.map((l) => [l.name, l.getClassName(), l.outputShape, l.countParams()]);
  result.trainable_counts = [
    model.trainableWeights.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0),
    model.nonTrainableWeights.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0),
  ];
  result.metrics_names = model.metricsNames || null;
  result.training_config = model.optimizer ? model.getTrainingConfig() : null;
  if (request.predict) {
    result.predictions = request.predict.map((a) => encode(model.predict(decode(tf, a))));
  }
  if (request.train) {
    result.losses = [];
    for (const batch of request.train) {
      const out = await model.trainOnBatch(decode(tf, batch.x), decode(tf, batch.y));
      result.losses.push(Array.isArray(out) ? out : [out]);
    }
  }
  if (request.fit) {
    const f = request.fit;
    const history = await model.fit(decode(tf, f.x), decode(tf, f.y),
      {batchSize: f.batchSize || 32, epochs: f.epochs || 1, shuffle: false, verbose: 0});
    result.fit_history = history.history;
  }
  if (request.predict_after) {
    result.predictions_after = request.predict_after.map((a) => encode(model.predict(decode(tf, a))));
  }
  result.weights = {};
  for (const w of model.weights) result.weights[w.originalName] = encode(w.read());
  if (request.save_dir) {
    await model.save(fileSaver(request.save_dir), {includeOptimizer: !!request.include_optimizer});
  }
  fs.writeFileSync(process.argv[2], JSON.stringify(result));
}

main().catch((e) => {
  process.stderr.write('tfjs_runner: ' + (e && e.stack ? e.stack : String(e)) + '\n');
  process.exit(2);
});
