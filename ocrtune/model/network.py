"""EasyOCR's generation-2 recognizer (None-VGG-BiLSTM-CTC), written here so training owns its code.

State-dict keys and shapes match ``easyocr.model.vgg_model.Model`` exactly, so weights move both ways
without conversion: a pretrained ``korean_g2.pth`` loads in, an exported ``custom.pth`` loads in Reader.
This file is shipped verbatim as an export's NAME.py (ocrtune.export): it must import nothing but torch.
"""

from __future__ import annotations

import torch
from torch import nn


def _vgg_stack(input_channel: int, output_channel: int) -> nn.Sequential:
    """The VGG trunk: 64 px high in, 1 px high out; width shrinks by 4 (then minus 1 from the last 2x2 conv).

    Layer order (and so the Sequential indices in the state dict) follows EasyOCR's VGG_FeatureExtractor.
    """
    c1, c2, c3, c4 = output_channel // 8, output_channel // 4, output_channel // 2, output_channel

    def conv(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=bias)

    return nn.Sequential(
        conv(input_channel, c1), nn.ReLU(True), nn.MaxPool2d(2, 2),  # 0-2
        conv(c1, c2), nn.ReLU(True), nn.MaxPool2d(2, 2),  # 3-5
        conv(c2, c3), nn.ReLU(True),  # 6-7
        conv(c3, c3), nn.ReLU(True), nn.MaxPool2d((2, 1), (2, 1)),  # 8-10
        conv(c3, c4, bias=False), nn.BatchNorm2d(c4), nn.ReLU(True),  # 11-13
        conv(c4, c4, bias=False), nn.BatchNorm2d(c4), nn.ReLU(True),  # 14-16
        nn.MaxPool2d((2, 1), (2, 1)),  # 17
        nn.Conv2d(c4, c4, kernel_size=2, stride=1, padding=0), nn.ReLU(True),  # 18-19
    )  # fmt: skip


class FeatureExtractor(nn.Module):
    def __init__(self, input_channel: int, output_channel: int):
        super().__init__()
        self.ConvNet = _vgg_stack(input_channel, output_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ConvNet(x)


class BiLSTM(nn.Module):
    """One bidirectional LSTM layer followed by a linear projection back to ``output_size``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:  # contiguous weights for cuDNN after DDP/replication
            self.rnn.flatten_parameters()
        out, _ = self.rnn(x)
        return self.linear(out)


class Model(nn.Module):
    """Image (B, input_channel, 64, W) -> per-column class logits (B, T, num_class), class 0 the CTC blank."""

    def __init__(
        self, input_channel: int = 1, output_channel: int = 256, hidden_size: int = 256, num_class: int = 1009
    ):
        super().__init__()
        self.FeatureExtraction = FeatureExtractor(input_channel, output_channel)
        self.AdaptiveAvgPool = nn.AdaptiveAvgPool2d((None, 1))
        self.SequenceModeling = nn.Sequential(
            BiLSTM(output_channel, hidden_size, hidden_size), BiLSTM(hidden_size, hidden_size, hidden_size)
        )
        self.Prediction = nn.Linear(hidden_size, num_class)
        self.num_class = num_class

    def forward(self, input: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """``text`` is accepted and ignored, as in EasyOCR's signature ``model(image, text_for_pred)``."""
        features = self.FeatureExtraction(input)  # (B, C, H', T)
        features = self.AdaptiveAvgPool(features.permute(0, 3, 1, 2)).squeeze(3)  # (B, T, C)
        context = self.SequenceModeling(features)
        return self.Prediction(context.contiguous())
