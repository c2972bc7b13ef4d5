"""Exporters (installed as ``dass_edge.exporters``): ONNX, INT8 Q/DQ, FP16 and TensorRT engine builders."""
