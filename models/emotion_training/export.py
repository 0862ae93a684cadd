"""ONNX export of the ensemble, static int8 quantisation and a plain ONNX runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import LABELS, N_CLS


def _used_inputs(members: list[dict], linear: dict | None, dim: int) -> np.ndarray:
    """Input columns some member gives a non-zero weight (the rest are dropped by a Gather)."""
    W0 = np.concatenate([w["W0"] for w in members], axis=1)
    used = np.any(W0 != 0, axis=1)
    if linear is not None and linear["weight"] > 0:
        used |= np.any(linear["W"] != 0, axis=1)
        if "W8" in linear:
            used |= np.any(linear["W8"] != 0, axis=1)
    return np.flatnonzero(used).astype(np.int64)


def _mlp_graph(members: list[dict], inp: str, used_idx: np.ndarray | None, temperature: float):
    """Initialisers and nodes of the MLP ensemble up to the three head slices (`logits`,
    `int_logit`, `ar_logit`): concatenated first layers, per-member second layers, stacked heads."""
    from onnx import helper, numpy_helper

    M = len(members)
    h1 = members[0]["W0"].shape[1]
    W0 = np.concatenate([w["W0"] for w in members], axis=1).astype(np.float32)
    if used_idx is not None:
        W0 = W0[used_idx]
    b0 = np.concatenate([w["b0"] for w in members]).astype(np.float32)
    W2 = (np.concatenate([w["W2"] for w in members], axis=0) / M).astype(np.float32)
    b2 = (np.mean([w["b2"] for w in members], axis=0)).astype(np.float32)
    inits = [
        numpy_helper.from_array(W0, "W0"),
        numpy_helper.from_array(b0, "b0"),
        numpy_helper.from_array(W2, "W2"),
        numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(np.array([1.0 / temperature], np.float32), "invT"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([h1] * M, np.int64), "split"),
    ]
    nodes = [
        helper.make_node("MatMul", [inp, "W0"], ["l0m"]),
        helper.make_node("Add", ["l0m", "b0"], ["l0a"]),
        helper.make_node("Relu", ["l0a"], ["l0"]),
        helper.make_node("Split", ["l0", "split"], [f"s{m}" for m in range(M)], axis=1),
    ]
    for m, w in enumerate(members):
        inits += [
            numpy_helper.from_array(w["W1"].astype(np.float32), f"W1_{m}"),
            numpy_helper.from_array(w["b1"].astype(np.float32), f"b1_{m}"),
        ]
        nodes += [
            helper.make_node("MatMul", [f"s{m}", f"W1_{m}"], [f"l1m_{m}"]),
            helper.make_node("Add", [f"l1m_{m}", f"b1_{m}"], [f"l1a_{m}"]),
            helper.make_node("Relu", [f"l1a_{m}"], [f"l1_{m}"]),
        ]
    nodes += [
        helper.make_node("Concat", [f"l1_{m}" for m in range(M)], ["l1"], axis=1),
        helper.make_node("MatMul", ["l1", "W2"], ["l2m"]),
        helper.make_node("Add", ["l2m", "b2"], ["heads"]),
    ]
    for name, k in (("logits", 0), ("int_logit", 1), ("ar_logit", 2)):
        inits += [
            numpy_helper.from_array(np.array([[0, N_CLS, N_CLS + 1][k]], np.int64), f"st_{name}"),
            numpy_helper.from_array(
                np.array([[N_CLS, N_CLS + 1, N_CLS + 2][k]], np.int64), f"en_{name}"
            ),
        ]
        nodes.append(
            helper.make_node("Slice", ["heads", f"st_{name}", f"en_{name}", "axis1"], [name])
        )
    return inits, nodes


def _linear_graph(linear: dict, inp: str, used_idx: np.ndarray | None, dim: int):
    """Initialisers and nodes that blend the LDA member into `blend_logits`: log((1-w) p_mlp +
    w p_lin), with p_lin = p_lin16 + is_8k (p_lin8 - p_lin16) when there is one LDA per rate."""
    from onnx import helper, numpy_helper

    def cols(W: np.ndarray) -> np.ndarray:
        return (W[used_idx] if used_idx is not None else W).astype(np.float32)

    w = float(linear["weight"])
    per_rate = "W8" in linear
    inits = [
        numpy_helper.from_array(cols(linear["W"]), "Wlin"),
        numpy_helper.from_array(linear["b"].astype(np.float32), "blin"),
        numpy_helper.from_array(np.array([1.0 - w], np.float32), "w_mlp"),
        numpy_helper.from_array(np.array([w], np.float32), "w_lin"),
        numpy_helper.from_array(np.array([1e-7], np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Softmax", ["logits"], ["p_mlp"], axis=1),
        helper.make_node("MatMul", [inp, "Wlin"], ["lin_m"]),
        helper.make_node("Add", ["lin_m", "blin"], ["lin_logits"]),
        helper.make_node("Softmax", ["lin_logits"], ["p_lin16" if per_rate else "p_lin"], axis=1),
    ]
    if per_rate:
        inits += [
            numpy_helper.from_array(cols(linear["W8"]), "Wlin8"),
            numpy_helper.from_array(linear["b8"].astype(np.float32), "blin8"),
            numpy_helper.from_array(np.array([dim - 1], np.int64), "flag_idx"),
        ]
        nodes += [
            helper.make_node("Gather", ["features", "flag_idx"], ["is8k"], axis=1),
            helper.make_node("MatMul", [inp, "Wlin8"], ["lin8_m"]),
            helper.make_node("Add", ["lin8_m", "blin8"], ["lin8_logits"]),
            helper.make_node("Softmax", ["lin8_logits"], ["p_lin8"], axis=1),
            helper.make_node("Sub", ["p_lin8", "p_lin16"], ["p_lin_d"]),
            helper.make_node("Mul", ["p_lin_d", "is8k"], ["p_lin_dm"]),
            helper.make_node("Add", ["p_lin16", "p_lin_dm"], ["p_lin"]),
        ]
    nodes += [
        helper.make_node("Mul", ["p_mlp", "w_mlp"], ["p_mlp_w"]),
        helper.make_node("Mul", ["p_lin", "w_lin"], ["p_lin_w"]),
        helper.make_node("Add", ["p_mlp_w", "p_lin_w"], ["p_blend"]),
        helper.make_node("Add", ["p_blend", "eps"], ["p_blend_eps"]),
        helper.make_node("Log", ["p_blend_eps"], ["blend_logits"]),
    ]
    return inits, nodes


def build_onnx(
    members, linear: dict | None, dim: int, temperature: float, spec_sha: str, path: Path
) -> None:
    """Ensemble as 3 MatMul layers: concatenated first layers, per-member second layers, stacked heads,
    plus an optional linear (LDA) member.

    Outputs: `probs` = softmax(log(blend) / T) with blend = (1-w) softmax(mean MLP logits) + w softmax(LDA
    logits), `intensity` = sigmoid(mean intensity logit), `arousal_high` = sigmoid(mean arousal logit)
    (auxiliary head, exported for diagnostics). Input columns that every member gives zero weight
    (the globally scaled branch when `Config.global_inputs` is off) are dropped by a Gather first.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    used_idx = _used_inputs(members, linear, dim)
    gather = len(used_idx) < dim
    inp = "x_used" if gather else "features"
    sel = used_idx if gather else None
    inits, nodes = _mlp_graph(members, inp, sel, temperature)
    logits_name = "logits"
    if linear is not None and linear["weight"] > 0:
        li, ln = _linear_graph(linear, inp, sel, dim)
        inits, nodes, logits_name = inits + li, nodes + ln, "blend_logits"
    nodes += [
        helper.make_node("Mul", [logits_name, "invT"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=1),
        helper.make_node("Sigmoid", ["int_logit"], ["intensity"]),
        helper.make_node("Sigmoid", ["ar_logit"], ["arousal_high"]),
    ]
    if gather:
        inits.append(numpy_helper.from_array(used_idx, "used_idx"))
        nodes.insert(0, helper.make_node("Gather", ["features", "used_idx"], [inp], axis=1))
    graph = helper.make_graph(
        nodes,
        "emotion_mlp_ensemble",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", N_CLS]),
            helper.make_tensor_value_info("intensity", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("arousal_high", TensorProto.FLOAT, ["N", 1]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="appliance-train-emotion"
    )
    model.ir_version = 8
    helper.set_model_props(model, {"spec_sha256": spec_sha, "labels": ",".join(LABELS)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def quantise(fp32: Path, int8: Path, calib: np.ndarray) -> None:
    """Static QDQ int8 quantisation (per-channel weights) calibrated on training inputs."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, X):
            self.it = iter([{"features": X[i : i + 64]} for i in range(0, len(X), 64)])

        def get_next(self):
            return next(self.it, None)

    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(
        logging.ERROR
    )  # quantize_static logs a "consider pre-processing" hint on every call
    try:
        quantize_static(
            str(fp32),
            str(int8),
            Reader(calib.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)
    # keep the spec digest in the quantised file's metadata
    src = onnx.load(str(fp32))
    m = onnx.load(str(int8))
    del m.metadata_props[:]
    for p in src.metadata_props:
        m.metadata_props.add(key=p.key, value=p.value)
    onnx.save(m, str(int8))


def onnx_run(path: Path, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    p, i, a = s.run(None, {"features": Z.astype(np.float32)})
    return p, i[:, 0], a[:, 0]
