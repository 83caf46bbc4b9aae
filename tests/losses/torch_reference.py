"""Independent PyTorch transcriptions of the reference objectives (RepDistiller
``distiller_zoo/`` and ``crd/``, mdistiller ``DKD``, KD_SRRL ``statm_loss``), NCHW, in the
references' own operations (``F.normalize``, ``F.adaptive_avg_pool2d``, ``F.kl_div``,
``F.smooth_l1_loss``, ``index_copy_``), written for these tests. kd_jax is checked against
them on random inputs of realistic shapes."""
import math

import torch
import torch.nn.functional as F


def pool_to_smaller(a, b):
  ha, hb = a.shape[2], b.shape[2]
  if ha > hb:
    a = F.adaptive_avg_pool2d(a, (hb, hb))
  elif ha < hb:
    b = F.adaptive_avg_pool2d(b, (ha, ha))
  return a, b


def kd(zs, zt, T):
  return F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1), reduction="sum") * T**2 / zs.shape[0]


def dkd(zs, zt, y, alpha, beta, T):
  gt = torch.zeros_like(zs).scatter_(1, y.unsqueeze(1), 1).bool()
  other = ~gt
  def two(p):
    return torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], 1)
  ps, pt = two(F.softmax(zs / T, 1)), two(F.softmax(zt / T, 1))
  tckd = F.kl_div(torch.log(ps), pt, reduction="sum") * T**2 / y.shape[0]
  qt = F.softmax(zt / T - 1000.0 * gt, 1)
  log_qs = F.log_softmax(zs / T - 1000.0 * gt, 1)
  nckd = F.kl_div(log_qs, qt, reduction="sum") * T**2 / y.shape[0]
  return alpha * tckd + beta * nckd


def hint(fs, ft):
  return F.mse_loss(fs, ft)


def at(fs, ft, p=2):
  fs, ft = pool_to_smaller(fs, ft)
  a = lambda f: F.normalize(f.pow(p).mean(1).view(f.size(0), -1))
  return (a(fs) - a(ft)).pow(2).mean()


def sp(fs, ft):
  b = fs.shape[0]
  gs = F.normalize(fs.view(b, -1) @ fs.view(b, -1).t())
  gt = F.normalize(ft.view(b, -1) @ ft.view(b, -1).t())
  return ((gt - gs) ** 2).sum() / (b * b)


def cc(es, et):
  d = (es - et).abs()
  return (d[:-1] * d[1:]).sum(1).mean()


def vid(fs, ft, regressor, log_scale, eps=1e-5):
  fs, ft = pool_to_smaller(fs, ft)
  mean = regressor(fs)
  var = (torch.log(1.0 + torch.exp(log_scale)) + eps).view(1, -1, 1, 1)
  return (0.5 * ((mean - ft) ** 2 / var + torch.log(var))).mean()


def _pdist(e, eps=1e-12):
  sq = e.pow(2).sum(1)
  d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt().clone()
  d[range(len(e)), range(len(e))] = 0
  return d


def rkd(fs, ft, wd=25.0, wa=50.0):
  s, t = fs.view(fs.shape[0], -1), ft.view(ft.shape[0], -1)
  td = _pdist(t)
  td = td / td[td > 0].mean()
  sd = _pdist(s)
  sd = sd / sd[sd > 0].mean()
  def angles(e):
    n = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(n, n.transpose(1, 2)).view(-1)
  return wd * F.smooth_l1_loss(sd, td) + wa * F.smooth_l1_loss(angles(s), angles(t))


def pkt(fs, ft, eps=1e-7):
  def prob(x):
    x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)
    x[x != x] = 0
    s = (x @ x.t() + 1.0) / 2.0
    return s / s.sum(1, keepdim=True)
  ps, pt = prob(fs.clone()), prob(ft.clone())
  return (pt * torch.log((pt + eps) / (ps + eps))).mean()


def ab(fs_list, ft_list, margin=1.0):
  n = len(fs_list)
  total = 0.0
  for i, (s, t) in enumerate(zip(fs_list, ft_list)):
    l = ((s + margin) ** 2 * ((s > -margin) & (t <= 0)).float()
         + (s - margin) ** 2 * ((s <= margin) & (t > 0)).float()).abs().sum()
    total = total + 2 ** (i - n + 1) * l / s.shape[0] / 1000 * 3
  return total


def ft(fs, ft_, p1=2, p2=1):
  fs, ft_ = pool_to_smaller(fs, ft_)
  factor = lambda f: F.normalize(f.pow(p1).mean(1).view(f.size(0), -1))
  d = factor(fs) - factor(ft_)
  return d.abs().mean() if p2 == 1 else d.pow(p2).mean()


def _fsp_matrices(g):
  out = []
  for bot, top in zip(g[:-1], g[1:]):
    bot, top = pool_to_smaller(bot, top)
    b = bot.unsqueeze(1).flatten(3)
    t = top.unsqueeze(2).flatten(3)
    out.append((b * t).mean(-1))
  return out


def fsp(gs, gt):
  return sum((s - t).pow(2).mean() for s, t in zip(_fsp_matrices(gs), _fsp_matrices(gt)))


def nst(fs, ft_):
  fs, ft_ = pool_to_smaller(fs, ft_)
  fs = F.normalize(fs.flatten(2), dim=2)
  ft_ = F.normalize(ft_.flatten(2), dim=2)
  k = lambda a, b: (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)
  return k(ft_, ft_).mean() + k(fs, fs).mean() - 2 * k(fs, ft_).mean()


class CRD:
  """The reference memory and loss, with its in-place buffers."""

  def __init__(self, memory_s, memory_t, T=0.07, momentum=0.5):
    self.memory_v1, self.memory_v2 = memory_s.clone(), memory_t.clone()
    self.z_v1 = self.z_v2 = -1.0
    self.T, self.momentum = T, momentum

  @staticmethod
  def contrast_loss(x, n_data, eps=1e-7):
    bsz, m = x.shape[0], x.size(1) - 1
    pn = 1 / float(n_data)
    log_d1 = torch.div(x[:, 0], x[:, 0] + m * pn + eps).log()
    log_d0 = torch.div(torch.full_like(x[:, 1:], m * pn), x[:, 1:] + m * pn + eps).log()
    return -(log_d1.sum(0) + log_d0.reshape(-1, 1).sum(0)) / bsz

  def __call__(self, v1, v2, y, idx):
    b, k1 = idx.shape
    n, d = self.memory_v1.shape
    w1 = torch.index_select(self.memory_v1, 0, idx.view(-1)).detach().view(b, k1, d)
    out_v2 = torch.exp(torch.bmm(w1, v2.view(b, d, 1)) / self.T)
    w2 = torch.index_select(self.memory_v2, 0, idx.view(-1)).detach().view(b, k1, d)
    out_v1 = torch.exp(torch.bmm(w2, v1.view(b, d, 1)) / self.T)
    if self.z_v1 < 0:
      self.z_v1 = (out_v1.mean() * n).item()
    if self.z_v2 < 0:
      self.z_v2 = (out_v2.mean() * n).item()
    out_v1, out_v2 = (out_v1 / self.z_v1).squeeze(-1), (out_v2 / self.z_v2).squeeze(-1)
    with torch.no_grad():
      for mem, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
        pos = torch.index_select(mem, 0, y.view(-1)) * self.momentum + v * (1 - self.momentum)
        mem.index_copy_(0, y, pos / pos.pow(2).sum(1, keepdim=True).pow(0.5))
    return self.contrast_loss(out_v1, n) + self.contrast_loss(out_v2, n)


def statm(fs, ft_):
  xs, xt = fs.flatten(2).mean(2), ft_.flatten(2).mean(2)
  return (xs - xt).pow(2).mean(1).mean()


def conv_reg_forward(x, conv_weight, conv_bias, bn_weight, bn_bias, kind, use_relu=True):
  """ConvReg in training mode (batch statistics), ``kind`` in {'down2', 'up2', 'valid'}."""
  if kind == "down2":
    x = F.conv2d(x, conv_weight, conv_bias, stride=2, padding=1)
  elif kind == "up2":
    x = F.conv_transpose2d(x, conv_weight, conv_bias, stride=2, padding=1)
  else:
    x = F.conv2d(x, conv_weight, conv_bias)
  x = F.batch_norm(x, None, None, bn_weight, bn_bias, training=True, eps=1e-5)
  return F.relu(x) if use_relu else x


def crd_memory_bound(dim):
  return 1.0 / math.sqrt(dim / 3)
