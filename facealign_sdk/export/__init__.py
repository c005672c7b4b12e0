"""Model export: ONNX fp32 / fp16 / int8 (+ a decoding graph), TensorRT engines, and the parity report.

Entry point: ``facealign export`` (:mod:`facealign_sdk.cli.export`).
"""
