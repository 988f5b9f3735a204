"""Interoperability: the PyTorch bridge, ONNX export and the comparison with PyTorch."""
