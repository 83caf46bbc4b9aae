"""Independent PyTorch definitions of zoo models, written from the architectures (module names
as in the RepDistiller/mdistiller files and torchvision), for the conversion tests. Each
``forward`` returns ``(logits, {feature name: NCHW or [B, D] tensor})``."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(i, o, s=1):
  return nn.Conv2d(i, o, 3, s, 1, bias=False)


class CifarBlock(nn.Module):
  def __init__(self, i, o, s):
    super().__init__()
    self.conv1, self.bn1 = conv3x3(i, o, s), nn.BatchNorm2d(o)
    self.conv2, self.bn2 = conv3x3(o, o), nn.BatchNorm2d(o)
    self.downsample = (nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False), nn.BatchNorm2d(o))
                       if s != 1 or i != o else None)

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    pre = out + (self.downsample(x) if self.downsample is not None else x)
    return F.relu(pre), pre


class CifarResNet(nn.Module):  # RepDistiller models/resnet.py
  def __init__(self, depth, filters, num_classes):
    super().__init__()
    n = (depth - 2) // 6
    self.conv1, self.bn1 = conv3x3(3, filters[0]), nn.BatchNorm2d(filters[0])
    inp = filters[0]
    for k, (w, s) in enumerate(zip(filters[1:], (1, 2, 2)), start=1):
      blocks = []
      for j in range(n):
        blocks.append(CifarBlock(inp, w, s if j == 0 else 1))
        inp = w
      setattr(self, f"layer{k}", nn.ModuleList(blocks))
    self.fc = nn.Linear(filters[3], num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    feats = {"stem": x}
    for k in (1, 2, 3):
      for block in getattr(self, f"layer{k}"):
        x, pre = block(x)
      feats[f"stage{k}"], feats[f"preact/stage{k}"] = x, pre
    pooled = x.mean((2, 3))
    feats["pooled"] = pooled
    return self.fc(pooled), feats


class WRNBlock(nn.Module):
  def __init__(self, i, o, s):
    super().__init__()
    self.bn1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, s, 1, bias=False)
    self.bn2, self.conv2 = nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1, bias=False)
    self.equal = i == o
    self.convShortcut = None if self.equal else nn.Conv2d(i, o, 1, s, 0, bias=False)

  def forward(self, x):
    pre_in = self.bn1(x)
    act = F.relu(pre_in)
    out = self.conv2(F.relu(self.bn2(self.conv1(act))))
    return (x if self.equal else self.convShortcut(act)) + out, pre_in


class WRN(nn.Module):  # RepDistiller models/wrn.py
  def __init__(self, depth, k, num_classes):
    super().__init__()
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    for b, s in zip((1, 2, 3), (1, 2, 2)):
      layer = nn.Sequential(*[WRNBlock(widths[b - 1] if j == 0 else widths[b], widths[b],
                                       s if j == 0 else 1) for j in range(n)])
      setattr(self, f"block{b}", nn.Module())
      getattr(self, f"block{b}").layer = layer
    self.bn1 = nn.BatchNorm2d(widths[3])
    self.fc = nn.Linear(widths[3], num_classes)

  def forward(self, x):
    x = self.conv1(x)
    feats = {"stem": x}
    for b in (1, 2, 3):
      for j, block in enumerate(getattr(self, f"block{b}").layer):
        x, pre_in = block(x)
        if j == 0 and b > 1:
          feats[f"preact/stage{b - 1}"] = pre_in
      feats[f"stage{b}"] = x
    x = self.bn1(x)
    feats["preact/stage3"] = x
    pooled = F.relu(x).mean((2, 3))
    feats["pooled"] = pooled
    return self.fc(pooled), feats


class VGG8(nn.Module):  # RepDistiller models/vgg.py, vgg8_bn: cfg S
  def __init__(self, num_classes):
    super().__init__()
    widths, inp = (64, 128, 256, 512, 512), 3
    for b, w in enumerate(widths):
      setattr(self, f"block{b}", nn.Sequential(nn.Conv2d(inp, w, 3, padding=1), nn.BatchNorm2d(w)))
      inp = w
    self.classifier = nn.Linear(512, num_classes)

  def forward(self, x):
    h, feats = x.shape[2], {}
    for b in range(5):
      if b in (1, 2, 3) or (b == 4 and h == 64):
        x = F.max_pool2d(x, 2, 2)
      x = getattr(self, f"block{b}")(x)
      if b:
        feats[f"preact/stage{b}"] = x
      x = F.relu(x)
      feats["stem" if b == 0 else f"stage{b}"] = x
    pooled = x.mean((2, 3))
    feats["pooled"] = pooled
    return self.classifier(pooled), feats


class InvRes(nn.Module):
  def __init__(self, i, o, s, t):
    super().__init__()
    h = i * t
    self.conv = nn.Sequential(
        nn.Conv2d(i, h, 1, 1, 0, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
        nn.Conv2d(h, h, 3, s, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
        nn.Conv2d(h, o, 1, 1, 0, bias=False), nn.BatchNorm2d(o))
    self.res = s == 1 and i == o

  def forward(self, x):
    return x + self.conv(x) if self.res else self.conv(x)


class MobileHalf(nn.Module):  # RepDistiller models/mobilenetv2.py mobile_half
  def __init__(self, num_classes):
    super().__init__()
    setting = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]
    self.conv1 = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    inp, blocks = 16, []
    for t, c, n, s in setting:
      layers = []
      for j in range(n):
        layers.append(InvRes(inp, c // 2, s if j == 0 else 1, t))
        inp = c // 2
      blocks.append(nn.Sequential(*layers))
    self.blocks = nn.ModuleList(blocks)
    self.conv2 = nn.Sequential(nn.Conv2d(inp, 1280, 1, 1, 0, bias=False), nn.BatchNorm2d(1280),
                               nn.ReLU())
    self.classifier = nn.Sequential(nn.Linear(1280, num_classes))

  def forward(self, x):
    x = self.conv1(x)
    feats = {"stem": x}
    for i, block in enumerate(self.blocks):
      x = block(x)
      k = {1: 1, 2: 2, 4: 3, 6: 4}.get(i)
      if k:
        feats[f"stage{k}"] = feats[f"preact/stage{k}"] = x
    pooled = self.conv2(x).mean((2, 3))
    feats["pooled"] = pooled
    return self.classifier(pooled), feats


TVBlock = CifarBlock  # torchvision's BasicBlock has the same layers and names.


class ResNet18(nn.Module):  # torchvision layout and names
  def __init__(self, num_classes):
    super().__init__()
    self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    inp = 64
    for k, (w, s) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), start=1):
      setattr(self, f"layer{k}", nn.Sequential(TVBlock(inp, w, s), TVBlock(w, w, 1)))
      inp = w
    self.fc = nn.Linear(512, num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    feats = {"stem": x}
    x = F.max_pool2d(x, 3, 2, 1)
    for k in (1, 2, 3, 4):
      for block in getattr(self, f"layer{k}"):
        x, pre = block(x)
      feats[f"stage{k}"], feats[f"preact/stage{k}"] = x, pre
    pooled = x.mean((2, 3))
    feats["pooled"] = pooled
    return self.fc(pooled), feats


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
  """Non-trivial BatchNorm parameters and running statistics; eval mode."""
  g = torch.Generator().manual_seed(seed)
  for m in model.modules():
    if isinstance(m, nn.BatchNorm2d):
      c = m.num_features
      m.weight.data = 0.5 + torch.rand(c, generator=g)
      m.bias.data = 0.2 * torch.randn(c, generator=g)
      m.running_mean.data = 0.2 * torch.randn(c, generator=g)
      m.running_var.data = 0.5 + torch.rand(c, generator=g)
  return model.eval()
