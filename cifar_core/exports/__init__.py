"""Exports of a trained run for phones and servers: LiteRT (float32, float16, int8), ONNX
and SavedModel, each checked against the Keras model on the whole test set before it is used.

- ``convert``: the converters (Keras 3's ``Model.export``; TensorFlow's LiteRT converter and
  tf2onnx behind it), a float32 copy for bfloat16 layers;
- ``runtimes``: each file run by its own runtime (ai-edge-litert, onnxruntime, TensorFlow);
- ``parity``: the gate (top-1 agreement and top-1 lost against ``predictions.npz``);
- ``manifest``: ``<run>/exports/manifest.json``, SHA-256 checked on every use;
- ``make``: one export end to end (``export_run``) and ``ExportClassifier`` for predict and the
  Classify page.

The runtimes are the optional extra ``pip install 'cifar-core[export]'``.

Import from the modules (``from cifar_core.exports.make import export_run``): ``manifest`` and
``parity`` load without TensorFlow, so a page can list exports before it needs a model.
"""
