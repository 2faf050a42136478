"""From a trained run to a running model: prediction on new CTs, ONNX export, int8 quantization."""
