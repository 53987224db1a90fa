"""Network definitions (torch), parameter/MAC counting, and export to an ONNX graph.

Three architectures:
- ``unet``: a small U-Net (3 poolings, channels 8/16/32/40 by default) with batch norm folded into the
  convolutions at export. This is the shipped model.
- ``wnet``: two small U-Nets in a row (a "W-Net"): the second sees the image and the first one's
  probability and refines it. Both outputs are trained against the label; the second is the model's output.
- ``reference``: the published Atlas 200DK case study's FCN: 16 full-resolution 3x3 convolutions
  (3->16, 11 x 16->16, 16->8, 2 x 8->8, 8->1), ReLU, sigmoid: 28k parameters, 7.4 GMAC at 512x512.

Training feeds one gray channel (the preprocessing makes R = G = B); export spreads the weights of a
layer that reads the gray image (``takes_image``) over the three channels AIPP delivers (w/3 each), which
is exact for gray input. A network built with ``in_ch=3`` reads the colour image as it is.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn: bool = True) -> None:
        layers: List[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _mark_image_input(conv: nn.Conv2d, image_ch: int) -> None:
    """If the image is gray (``image_ch`` 1), channel 0 of this convolution's input is that gray image,
    which the deployed graph feeds as three equal channels."""
    conv.takes_image = image_ch == 1  # type: ignore[attr-defined]


class SmallUNet(nn.Module):
    """U-Net with ``len(channels) - 1`` poolings; returns logits. The first ``image_ch`` input channels are the
    image (default: all of them)."""

    def __init__(self, channels: Sequence[int] = (8, 16, 32, 40), in_ch: int = 1, image_ch: int = 0) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.in_ch = in_ch
        self.enc = nn.ModuleList()
        cin = in_ch
        for c in channels:
            self.enc.append(nn.Sequential(ConvBNReLU(cin, c), ConvBNReLU(c, c)))
            cin = c
        _mark_image_input(self.enc[0][0][0], image_ch or in_ch)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_skip, c_deep in zip(reversed(channels[:-1]), reversed(channels[1:])):
            self.up.append(nn.ConvTranspose2d(c_deep, c_skip, 2, stride=2))
            self.dec.append(nn.Sequential(ConvBNReLU(2 * c_skip, c_skip), ConvBNReLU(c_skip, c_skip)))
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class WNet(nn.Module):
    """Two small U-Nets: the second reads (image, sigmoid of the first's logits); returns its logits."""

    def __init__(self, channels: Sequence[int] = (8, 16, 32), in_ch: int = 1) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.in_ch = in_ch
        self.first = SmallUNet(channels, in_ch=in_ch)
        self.second = SmallUNet(channels, in_ch=in_ch + 1, image_ch=in_ch)

    def forward_all(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Both stages' logits, for a loss on each."""
        first = self.first(x)
        return first, self.second(torch.cat([x, torch.sigmoid(first)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[1]


class ReferenceFCN(nn.Module):
    """The case study's 16-layer FCN; returns logits."""

    def __init__(self, in_ch: int = 1) -> None:
        super().__init__()
        self.in_ch = in_ch
        widths = [16] * 12 + [8] * 3
        layers: List[nn.Module] = []
        cin = in_ch
        for c in widths:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True)]
            cin = c
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        _mark_image_input(self.body[0], in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_model(arch: str, **kwargs) -> nn.Module:
    if arch == "unet":
        return SmallUNet(**kwargs)
    if arch == "wnet":
        return WNet(**kwargs)
    if arch == "reference":
        return ReferenceFCN(**kwargs)
    raise ValueError("unknown architecture %r (choose unet, wnet or reference)" % arch)


def network_from_checkpoint(ckpt: Dict) -> nn.Module:
    """The network a training checkpoint holds (its architecture, built and loaded with its weights)."""
    model = build_model(ckpt["arch"], **ckpt.get("arch_kwargs", {}))
    model.load_state_dict(ckpt["model"])
    return model


def count_parameters_deployed(model: nn.Module) -> int:
    """Parameters of the exported network (3 input channels, batch norm folded)."""
    graph = export_graph(model)
    return int(sum(a.size for a in graph.initializers.values()))


def count_macs(model: nn.Module, size: int = 512) -> int:
    """Multiply-accumulates of convolutions at ``size`` x ``size`` with the exported 3-channel input."""
    in_ch = getattr(model, "in_ch", 1)
    macs = [0]

    def conv_hook(mod: nn.Module, inp, out) -> None:
        k = mod.weight.shape[2] * mod.weight.shape[3]
        if isinstance(mod, nn.ConvTranspose2d):
            # each input pixel contributes cin*cout*k
            macs[0] += int(inp[0].shape[2] * inp[0].shape[3] * mod.in_channels * mod.out_channels * k)
        else:
            cin = mod.in_channels + (2 if getattr(mod, "takes_image", False) else 0)
            macs[0] += int(out.shape[2] * out.shape[3] * cin * mod.out_channels * k)

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_ch, size, size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs[0]


def _fold(conv: nn.Conv2d, bn: "nn.BatchNorm2d | None") -> Tuple[np.ndarray, np.ndarray]:
    w = conv.weight.detach().double().cpu().numpy()
    b = conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        scale = bn.weight.detach().double().cpu().numpy() / np.sqrt(bn.running_var.detach().double().cpu().numpy()
                                                                    + bn.eps)
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.detach().double().cpu().numpy()) * scale + bn.bias.detach().double().cpu().numpy()
    return w.astype(np.float32), b.astype(np.float32)


def export_graph(model: nn.Module, size: int = 512, input_name: str = "image", output_name: str = "probability"):
    """The trained network as a ``device.onnx_proto.Graph`` (opset 11): Conv/ConvTranspose/Relu/MaxPool/
    Concat/Sigmoid only, input NCHW float32 1x3xSxS, output 1x1xSxS probability."""
    from vessel_seg.device.onnx_proto import Graph, Node, ValueInfo

    nodes: List = []
    inits: Dict[str, np.ndarray] = {}
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return "%s_%d" % (prefix, counter[0])

    def conv(x: str, module: nn.Conv2d, bn: "nn.BatchNorm2d | None", relu: bool) -> str:
        w, b = _fold(module, bn)
        if getattr(module, "takes_image", False):
            # channel 0 is the gray image, delivered as three equal channels: spread its weights over them
            w = np.concatenate([np.repeat(w[:, :1] / 3.0, 3, axis=1), w[:, 1:]], axis=1).astype(np.float32)
        wn, bn_ = name("W"), name("B")
        inits[wn], inits[bn_] = w, b
        k = w.shape[2]
        y = name("conv")
        nodes.append(Node("Conv", [x, wn, bn_], [y], name=y,
                          attrs={"kernel_shape": [k, k], "pads": [k // 2] * 4, "strides": [1, 1]}))
        if relu:
            r = name("relu")
            nodes.append(Node("Relu", [y], [r], name=r))
            return r
        return y

    def block(x: str, seq: nn.Module) -> str:
        for cbr in seq:
            x = conv(x, cbr[0], cbr[1] if len(cbr) == 3 else None, relu=True)
        return x

    def unet(x: str, net: SmallUNet) -> str:
        """Emit a U-Net's nodes reading ``x``; returns the name of its logits."""
        skips = []
        for i, enc in enumerate(net.enc):
            if i:
                p = name("pool")
                nodes.append(Node("MaxPool", [x], [p], name=p, attrs={"kernel_shape": [2, 2], "strides": [2, 2]}))
                x = p
            x = block(x, enc)
            skips.append(x)
        for up, dec, skip in zip(net.up, net.dec, reversed(skips[:-1])):
            wn, bn_ = name("W"), name("B")
            inits[wn] = up.weight.detach().cpu().numpy().astype(np.float32)
            inits[bn_] = up.bias.detach().cpu().numpy().astype(np.float32)
            u = name("up")
            nodes.append(Node("ConvTranspose", [x, wn, bn_], [u], name=u,
                              attrs={"kernel_shape": [2, 2], "strides": [2, 2]}))
            c = name("concat")
            nodes.append(Node("Concat", [u, skip], [c], name=c, attrs={"axis": 1}))
            x = block(c, dec)
        return conv(x, net.head, None, relu=False)

    x = input_name
    if isinstance(model, SmallUNet):
        x = unet(x, model)
    elif isinstance(model, WNet):
        first = unet(x, model.first)
        s1 = name("sigmoid")
        nodes.append(Node("Sigmoid", [first], [s1], name=s1))
        c = name("concat")
        nodes.append(Node("Concat", [x, s1], [c], name=c, attrs={"axis": 1}))
        x = unet(c, model.second)
    elif isinstance(model, ReferenceFCN):
        convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
        for i, m in enumerate(convs):
            x = conv(x, m, None, relu=i < len(convs) - 1)
    else:
        raise TypeError("cannot export %s" % type(model).__name__)
    nodes.append(Node("Sigmoid", [x], [output_name], name="sigmoid"))
    return Graph(name=type(model).__name__, nodes=nodes, initializers=inits,
                 inputs=[ValueInfo(input_name, [1, 3, size, size])],
                 outputs=[ValueInfo(output_name, [1, 1, size, size])])
