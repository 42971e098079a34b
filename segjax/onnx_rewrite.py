"""Rewrites of jax2onnx's graphs into the ops ONNX Runtime and TensorRT run fastest.

jax2onnx translates primitive by primitive, so a gather along one axis arrives wrapped in
transposes, a bilinear resize as four gathers and a lerp, ReLU as a max and PReLU as a
select. `simplify` gives each back its one ONNX op. Every rewrite checks the exact pattern
(for a resize, also that the constant taps are PyTorch's for one
`coordinate_transformation_mode`) and leaves anything else as it was. On FASSD-Net-L2 at
512×1024 they took ONNX Runtime from 74 to 32 ms.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segjax.models.layers import linear_taps


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    for rewrite in (gather_in_place, resize_ops, merge_resizes, activation_ops):
        rewrite(model)
        drop_unused(graph)  # the next pattern must not count dead readers
    return model


def _attribute(node, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name),
                default)


class _Index:
    """Who makes and who reads each value of a graph, as it is now."""

    def __init__(self, graph):
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def made_by(self, name: str, op_type: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None


def _replace_nodes(graph, replaced: dict[int, list], removed: set[int]) -> None:
    nodes = []
    for node in graph.node:
        if id(node) in replaced:
            nodes.extend(replaced[id(node)])
        elif id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def gather_in_place(model: onnx.ModelProto) -> None:
    """`Transpose(P) → Gather(axis=0) → Transpose(P⁻¹)` becomes `Gather(axis=P[0])`.

    jax2onnx moves a gathered axis to the front and back again; ONNX's Gather takes any axis.
    """
    graph = model.graph
    index, removed = _Index(graph), set()
    for node in graph.node:
        before = index.made_by(node.input[0], "Transpose") if node.op_type == "Gather" else None
        after = index.consumers.get(node.output[0], [])
        if (before is None or _attribute(node, "axis", 0) != 0 or len(after) != 1
                or after[0].op_type != "Transpose"):
            continue
        perm, back = list(_attribute(before, "perm")), list(_attribute(after[0], "perm"))
        if [perm[i] for i in back] != list(range(len(perm))):
            continue
        node.CopyFrom(helper.make_node("Gather", [before.input[0], node.input[1]],
                                       [after[0].output[0]], name=node.name, axis=perm[0]))
        removed.add(id(after[0]))
    _replace_nodes(graph, {}, removed)


def resize_ops(model: onnx.ModelProto) -> None:
    """`lo + (hi − lo)·w` over two gathers of one NHWC axis becomes one linear `Resize`.

    The pattern `layers.resize_bilinear` leaves per axis. Replaced only when the gathered
    indices and weights are exactly PyTorch's taps for align_corners or half-pixel sampling.
    """
    graph = model.graph
    shapes = {value.name: [d.dim_value or None for d in value.type.tensor_type.shape.dim]
              for value in onnx.shape_inference.infer_shapes(model).graph.value_info}
    shapes.update({value.name: [d.dim_value or None for d in value.type.tensor_type.shape.dim]
                   for value in graph.input})
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    index, replaced, removed = _Index(graph), {}, set()
    for add in graph.node:
        if add.op_type != "Add":
            continue
        for low_name, step_name in (add.input, add.input[::-1]):
            low, mul = index.made_by(low_name, "Gather"), index.made_by(step_name, "Mul")
            if low is None or mul is None:
                continue
            diff_at = 0 if index.made_by(mul.input[0], "Sub") else 1
            sub = index.made_by(mul.input[diff_at], "Sub")
            weight = constants.get(mul.input[1 - diff_at])
            high = index.made_by(sub.input[0], "Gather") if sub is not None else None
            if (high is None or weight is None or sub.input[1] != low.output[0]
                    or high.input[0] != low.input[0]):
                continue
            source, axis = low.input[0], _attribute(low, "axis", 0)
            shape = shapes.get(source)
            lo, hi = constants.get(low.input[1]), constants.get(high.input[1])
            if (_attribute(high, "axis", 0) != axis or lo is None or hi is None
                    or shape is None or len(shape) != 4 or axis not in (1, 2)
                    or shape[axis] is None or None in shape[1:]):
                continue
            mode = _coordinate_mode(shape[axis], lo.ravel(), hi.ravel(), weight.ravel())
            if mode is None:
                continue
            shape[axis] = lo.size
            replaced[id(add)] = _resize(graph, source, add.output[0], shape[1:], mode,
                                        add.output[0])
            removed.update({id(low), id(high), id(sub), id(mul)})
            break
    _replace_nodes(graph, replaced, removed)


def _coordinate_mode(in_size: int, lo, hi, weight) -> str | None:
    for align_corners, mode in ((True, "align_corners"), (False, "pytorch_half_pixel")):
        want_lo, want_hi, want_weight = linear_taps(in_size, lo.size, align_corners)
        if (np.array_equal(want_lo, lo) and np.array_equal(want_hi, hi)
                and np.allclose(want_weight, weight, atol=1e-6)):
            return mode
    return None


def _resize(graph, source: str, output: str, hwc: list[int], mode: str, prefix: str) -> list:
    """A linear Resize to (batch of `source`, *hwc): sizes, not scales, so no rounding."""
    hwc_name, roi_name = f"{prefix}/resize_hwc", f"{prefix}/resize_roi"
    graph.initializer.extend([numpy_helper.from_array(np.asarray(hwc, np.int64), hwc_name),
                              numpy_helper.from_array(np.zeros(0, np.float32), roi_name)])
    return [
        helper.make_node("Shape", [source], [f"{prefix}/batch"], start=0, end=1),
        helper.make_node("Concat", [f"{prefix}/batch", hwc_name], [f"{prefix}/sizes"], axis=0),
        helper.make_node("Resize", [source, roi_name, "", f"{prefix}/sizes"], [output],
                         mode="linear", coordinate_transformation_mode=mode),
    ]


def merge_resizes(model: onnx.ModelProto) -> None:
    """A resize of H read only by a resize of W in the same mode: one 2-D resize of the input.

    Bilinear sampling is separable, so this is the same map in one pass instead of two.
    """
    graph = model.graph
    index = _Index(graph)
    for second in graph.node:
        first = index.made_by(second.input[0], "Resize") if second.op_type == "Resize" else None
        if (first is None or _attribute(first, "coordinate_transformation_mode")
                != _attribute(second, "coordinate_transformation_mode")):
            continue
        readers = index.consumers[first.output[0]]
        shape_of = [n for n in readers if n is not second]
        if len(shape_of) != 1 or shape_of[0].op_type != "Shape":  # the one reading its batch
            continue
        shape_of[0].input[0] = second.input[0] = first.input[0]


def _is_zero(array) -> bool:
    return array is not None and array.dtype.kind == "f" and array.size == 1 and not array.any()


def activation_ops(model: onnx.ModelProto) -> None:
    """`Max(x, 0)` becomes `Relu(x)` and `Where(x ≥ 0, x, a·x)` becomes `PRelu(x, a)`.

    ONNX Runtime fuses a Relu into the conv before it and keeps its blocked conv layout
    across it; after a Max it converts the layout back and forth (DDRNet-23-slim: 93 → 85 ms).
    """
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    index, replaced = _Index(graph), {}
    for node in graph.node:
        if node.op_type == "Max" and len(node.input) == 2:
            for x, zero in (node.input, node.input[::-1]):
                if _is_zero(constants.get(zero)):
                    replaced[id(node)] = [helper.make_node("Relu", [x], list(node.output),
                                                           name=node.name)]
                    break
        elif node.op_type == "Where":
            test, x, negative = node.input
            test = index.made_by(test, "GreaterOrEqual")
            scaled = index.made_by(negative, "Mul")
            if (test is None or scaled is None or test.input[0] != x
                    or not _is_zero(constants.get(test.input[1])) or x not in scaled.input):
                continue
            slope = scaled.input[1] if scaled.input[0] == x else scaled.input[0]
            per_channel = constants.get(slope)  # (..., C) with every other dim 1, or a scalar
            if per_channel is not None and per_channel.size == (per_channel.shape or (1,))[-1]:
                replaced[id(node)] = [helper.make_node("PRelu", [x, slope], list(node.output),
                                                       name=node.name)]
    _replace_nodes(graph, replaced, set())


def drop_unused(graph) -> None:
    """Removes nodes none of whose outputs is read, until none is left, then the initializers
    nothing reads (ONNX Runtime warns about each one when it loads the file)."""
    while True:
        read = {name for node in graph.node for name in node.input}
        read.update(output.name for output in graph.output)
        kept = [node for node in graph.node if any(out in read for out in node.output)]
        if len(kept) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(kept)
    used = [init for init in graph.initializer if init.name in read]
    del graph.initializer[:]
    graph.initializer.extend(used)
