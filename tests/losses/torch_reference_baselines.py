"""The logit baselines of 2022-2024 as their authors wrote them (PyTorch), transcribed for
these tests: the operations, reductions, epsilons and detach placement of each file named
below, with only the framework plumbing (registries, ``.cuda()``) removed.

  DIST   hunto/image_classification_sota @6f7a70a  lib/models/losses/dist_kd.py
  LS     sunshangquan/logit-standardization-KD @f6e5aa5  mdistiller/distillers/{KD,DKD}.py,
         CTKD/distiller_zoo/KD.py (DistillKL_logit_stand)
  NKD    yzd-v/cls_KD @1e5d48f  mmcls/models/dis_losses/nkd.py
  WTTM   zkxufo/TTM @fe457b3  distiller_zoo/wttm.py
  CTKD   zhengli97/CTKD @7d52522  models/temp_global.py, distiller_zoo/{KD,DKD}.py,
         train_student.py (CosineDecay), helper/loops.py (temp = t_start + t_end * sigmoid)
  ReviewKD  megvii-research/mdistiller @a08d46f  mdistiller/distillers/ReviewKD.py
  MLKD   sunshangquan/logit-standardization-KD @f6e5aa5  mdistiller/distillers/MLKD.py (which
         is Jin-Ying/Multi-Level-Logit-Distillation @5ee473f KD_ours.py plus logit_stand)
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import Function


# ---- DIST (dist_kd.py, verbatim) ----
def cosine_similarity(a, b, eps=1e-8):
  return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def pearson_correlation(a, b, eps=1e-8):
  return cosine_similarity(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1), eps)


def inter_class_relation(y_s, y_t):
  return 1 - pearson_correlation(y_s, y_t).mean()


def intra_class_relation(y_s, y_t):
  return inter_class_relation(y_s.transpose(0, 1), y_t.transpose(0, 1))


class DIST(nn.Module):
  def __init__(self, beta=1.0, gamma=1.0, tau=1.0):
    super().__init__()
    self.beta, self.gamma, self.tau = beta, gamma, tau

  def forward(self, z_s, z_t):
    y_s = (z_s / self.tau).softmax(dim=1)
    y_t = (z_t / self.tau).softmax(dim=1)
    inter_loss = self.tau**2 * inter_class_relation(y_s, y_t)
    intra_loss = self.tau**2 * intra_class_relation(y_s, y_t)
    return self.beta * inter_loss + self.gamma * intra_loss


# ---- Logit standardization (mdistiller/distillers/KD.py, DKD.py) ----
def normalize(logit):
  mean = logit.mean(dim=-1, keepdims=True)
  stdv = logit.std(dim=-1, keepdims=True)
  return (logit - mean) / (1e-7 + stdv)


def kd_loss(logits_student_in, logits_teacher_in, temperature, logit_stand):
  logits_student = normalize(logits_student_in) if logit_stand else logits_student_in
  logits_teacher = normalize(logits_teacher_in) if logit_stand else logits_teacher_in
  log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
  pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
  loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
  loss_kd *= temperature**2
  return loss_kd


def _get_gt_mask(logits, target):
  target = target.reshape(-1)
  return torch.zeros_like(logits).scatter_(1, target.unsqueeze(1), 1).bool()


def _get_other_mask(logits, target):
  target = target.reshape(-1)
  return torch.ones_like(logits).scatter_(1, target.unsqueeze(1), 0).bool()


def cat_mask(t, mask1, mask2):
  t1 = (t * mask1).sum(dim=1, keepdims=True)
  t2 = (t * mask2).sum(1, keepdims=True)
  return torch.cat([t1, t2], dim=1)


def kl_div_finite(input, target, reduction="sum"):
  """``F.kl_div`` as documented (``target * (log target - input)``, 0 where target is 0),
  with a gradient of 0 there too: F.kl_div's gradient w.r.t. the target is NaN where the
  target is exactly 0 (e.g. DKD's masked class at a learned temperature)."""
  positive = target > 0
  safe = torch.where(positive, target, torch.ones_like(target))
  out = torch.where(positive, target * (torch.log(safe) - input), torch.zeros_like(target))
  return out.sum() if reduction == "sum" else out


def dkd_loss(logits_student_in, logits_teacher_in, target, alpha, beta, temperature, logit_stand,
             kl_div=F.kl_div):
  logits_student = normalize(logits_student_in) if logit_stand else logits_student_in
  logits_teacher = normalize(logits_teacher_in) if logit_stand else logits_teacher_in
  gt_mask = _get_gt_mask(logits_student, target)
  other_mask = _get_other_mask(logits_student, target)
  pred_student = F.softmax(logits_student / temperature, dim=1)
  pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
  pred_student = cat_mask(pred_student, gt_mask, other_mask)
  pred_teacher = cat_mask(pred_teacher, gt_mask, other_mask)
  log_pred_student = torch.log(pred_student)
  tckd_loss = (kl_div(log_pred_student, pred_teacher, reduction="sum")
               * (temperature**2) / target.shape[0])
  pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
  log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
  nckd_loss = (kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum")
               * (temperature**2) / target.shape[0])
  return alpha * tckd_loss + beta * nckd_loss


# ---- NKD (nkd.py, the registry decorator removed) ----
class NKDLoss(nn.Module):
  def __init__(self, temp=1.0, gamma=1.5):
    super().__init__()
    self.temp, self.gamma = temp, gamma
    self.log_softmax = nn.LogSoftmax(dim=1)

  def forward(self, logit_s, logit_t, gt_label):
    if len(gt_label.size()) > 1:
      label = torch.max(gt_label, dim=1, keepdim=True)[1]
    else:
      label = gt_label.view(len(gt_label), 1)
    N, c = logit_s.shape
    s_i = self.log_softmax(logit_s)
    t_i = F.softmax(logit_t, dim=1)
    s_t = torch.gather(s_i, 1, label)
    t_t = torch.gather(t_i, 1, label).detach()
    loss_t = - (t_t * s_t).mean()
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    logit_s = logit_s[mask].reshape(N, -1)
    logit_t = logit_t[mask].reshape(N, -1)
    S_i = self.log_softmax(logit_s / self.temp)
    T_i = F.softmax(logit_t / self.temp, dim=1)
    loss_non = (T_i * S_i).sum(dim=1).mean()
    loss_non = - self.gamma * (self.temp**2) * loss_non
    return loss_t + loss_non


# ---- WTTM (wttm.py, verbatim) ----
class WTTM(nn.Module):
  def __init__(self, l):
    super().__init__()
    self.l = l

  def forward(self, y_s, y_t):
    p_s = F.log_softmax(y_s, dim=1)
    p_t = torch.pow(torch.softmax(y_t, dim=1), self.l)
    norm = torch.sum(p_t, dim=1)
    p_t = p_t / norm.unsqueeze(1)
    KL = torch.sum(F.kl_div(p_s, p_t, reduction='none'), dim=1)
    return torch.mean(norm * KL)


# ---- CTKD (temp_global.py, KD.py, DKD.py, train_student.py, loops.py) ----
class GradientReversalFunction(Function):
  @staticmethod
  def forward(ctx, x, lambda_):
    ctx.lambda_ = lambda_
    return x.clone()

  @staticmethod
  def backward(ctx, grads):
    lambda_ = grads.new_tensor(ctx.lambda_)
    return lambda_ * grads, None


class Global_T(nn.Module):
  def __init__(self, dtype=torch.float64):
    super().__init__()
    self.global_T = nn.Parameter(torch.ones(1, dtype=dtype), requires_grad=True)

  def forward(self, fake_input1, fake_input2, lambda_):
    return GradientReversalFunction.apply(self.global_T, lambda_)


class CosineDecay:
  def __init__(self, max_value, min_value, num_loops):
    self._max_value, self._min_value, self._num_loops = max_value, min_value, num_loops

  def get_value(self, i):
    if i < 0:
      i = 0
    if i >= self._num_loops:
      i = self._num_loops
    value = (math.cos(i * math.pi / self._num_loops) + 1.0) * 0.5
    return value * (self._max_value - self._min_value) + self._min_value


class DistillKL(nn.Module):
  def forward(self, y_s, y_t, temp):
    T = temp
    return nn.KLDivLoss(reduction='batchmean')(F.log_softmax(y_s / T, dim=1),
                                               F.softmax(y_t / T, dim=1)) * T * T


class DistillKL_logit_stand(nn.Module):
  def forward(self, y_s, y_t, temp):
    T = temp
    return nn.KLDivLoss(reduction='batchmean')(F.log_softmax(normalize(y_s) / T, dim=1),
                                               F.softmax(normalize(y_t) / T, dim=1)) * T * T


class DKDloss(nn.Module):
  def __init__(self, kl_div=F.kl_div):
    super().__init__()
    self.kl_div = kl_div

  def forward(self, logits_student, logits_teacher, target, alpha, beta, temperature):
    return dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature, False,
                    self.kl_div)


def ctkd(mlp, y_s, y_t, target, epoch, base="kd", logit_stand=False, t_start=1.0, t_end=20.0,
         decay=(0.0, -1.0, 10), alpha=1.0, beta=2.0, kl_div=F.kl_div):
  """One step of helper/loops.py's train_distill: the temperature from Global_T through
  the reversal layer at ``CosineDecay(*decay).get_value(epoch)``, then the loss
  (``kl_div``: DKD's, ``kl_div_finite`` for a finite temperature gradient)."""
  cos_value = CosineDecay(*decay).get_value(epoch)
  temp = mlp(y_t, y_s, cos_value)
  temp = t_start + t_end * torch.sigmoid(temp)
  if base == "dkd":
    return DKDloss(kl_div)(y_s, y_t, target, alpha, beta, temp)
  kl = DistillKL_logit_stand() if logit_stand else DistillKL()
  return kl(y_s, y_t, temp)


# ---- ReviewKD (mdistiller ReviewKD.py: hcl_loss and ABF verbatim; ReviewKD's __init__ and
# forward_train without the networks: they take the student's and teacher's feature lists) ----
def hcl_loss(fstudent, fteacher):
    loss_all = 0.0
    for fs, ft in zip(fstudent, fteacher):
        n, c, h, w = fs.shape
        loss = F.mse_loss(fs, ft, reduction="mean")
        cnt = 1.0
        tot = 1.0
        for l in [4, 2, 1]:
            if l >= h:
                continue
            tmpfs = F.adaptive_avg_pool2d(fs, (l, l))
            tmpft = F.adaptive_avg_pool2d(ft, (l, l))
            cnt /= 2.0
            loss += F.mse_loss(tmpfs, tmpft, reduction="mean") * cnt
            tot += cnt
        loss = loss / tot
        loss_all = loss_all + loss
    return loss_all


class ABF(nn.Module):
    def __init__(self, in_channel, mid_channel, out_channel, fuse):
        super(ABF, self).__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channel, mid_channel, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid_channel),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(
                mid_channel, out_channel, kernel_size=3, stride=1, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channel),
        )
        if fuse:
            self.att_conv = nn.Sequential(
                nn.Conv2d(mid_channel * 2, 2, kernel_size=1),
                nn.Sigmoid(),
            )
        else:
            self.att_conv = None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)  # pyre-ignore
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)  # pyre-ignore

    def forward(self, x, y=None, shape=None, out_shape=None):
        n, _, h, w = x.shape
        # transform student features
        x = self.conv1(x)
        if self.att_conv is not None:
            # upsample residual features
            y = F.interpolate(y, (shape, shape), mode="nearest")
            # fusion
            z = torch.cat([x, y], dim=1)
            z = self.att_conv(z)
            x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
        # output
        if x.shape[-1] != out_shape:
            x = F.interpolate(x, (out_shape, out_shape), mode="nearest")
        y = self.conv2(x)
        return y, x


class ReviewKD(nn.Module):
    """``cfg.REVIEWKD``: shapes, out_shapes (deepest first), in/out channels (shallowest
    first), weight, warmup; ``forward(feats, pooled, t_preact_feats, t_pooled, epoch)`` takes
    the student's ``feats`` (or ``preact_feats``) list and the teacher's ``preact_feats``
    (each with the stem first, which the reference leaves out) and returns ``loss_kd``."""

    def __init__(self, shapes, out_shapes, in_channels, out_channels, weight=5.0, warmup=20):
        super().__init__()
        self.shapes = shapes
        self.out_shapes = out_shapes
        self.reviewkd_loss_weight = weight
        self.warmup_epochs = warmup
        abfs = nn.ModuleList()
        mid_channel = min(512, in_channels[-1])
        for idx, in_channel in enumerate(in_channels):
            abfs.append(
                ABF(
                    in_channel,
                    mid_channel,
                    out_channels[idx],
                    idx < len(in_channels) - 1,
                )
            )
        self.abfs = abfs[::-1]

    def forward(self, feats, pooled_feat, t_preact_feats, t_pooled_feat, epoch):
        x = feats + [pooled_feat.unsqueeze(-1).unsqueeze(-1)]
        x = x[::-1]
        results = []
        out_features, res_features = self.abfs[0](x[0], out_shape=self.out_shapes[0])
        results.append(out_features)
        for features, abf, shape, out_shape in zip(
            x[1:], self.abfs[1:], self.shapes[1:], self.out_shapes[1:]
        ):
            out_features, res_features = abf(features, res_features, shape, out_shape)
            results.insert(0, out_features)
        features_teacher = t_preact_feats[1:] + [t_pooled_feat.unsqueeze(-1).unsqueeze(-1)]
        return (
            self.reviewkd_loss_weight
            * min(epoch / self.warmup_epochs, 1.0)
            * hcl_loss(results, features_teacher)
        )


# ---- MLKD (sunshangquan/logit-standardization-KD @f6e5aa5 mdistiller/distillers/MLKD.py: the
# losses verbatim (``normalize`` is the same as above) and MLKD.forward_train without the
# networks: it takes the four logits. With logit_stand=False it is Jin-Ying/Multi-Level-Logit-
# Distillation @5ee473f KD_ours.forward_train line for line.) ----
def _mlkd_normalize(logit):
    mean = logit.mean(dim=-1, keepdims=True)
    stdv = logit.std(dim=-1, keepdims=True)
    return (logit - mean) / (1e-7 + stdv)

def mlkd_kd_loss(logits_student_in, logits_teacher_in, temperature, reduce=True, logit_stand=False):
    logits_student = _mlkd_normalize(logits_student_in) if logit_stand else logits_student_in
    logits_teacher = _mlkd_normalize(logits_teacher_in) if logit_stand else logits_teacher_in

    log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    if reduce:
        loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
    else:
        loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1)
    loss_kd *= temperature**2
    return loss_kd


def cc_loss(logits_student, logits_teacher, temperature, reduce=True):
    batch_size, class_num = logits_teacher.shape
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    student_matrix = torch.mm(pred_student.transpose(1, 0), pred_student)
    teacher_matrix = torch.mm(pred_teacher.transpose(1, 0), pred_teacher)
    if reduce:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2).sum() / class_num
    else:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2) / class_num
    return consistency_loss


def bc_loss(logits_student, logits_teacher, temperature, reduce=True):
    batch_size, class_num = logits_teacher.shape
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    student_matrix = torch.mm(pred_student, pred_student.transpose(1, 0))
    teacher_matrix = torch.mm(pred_teacher, pred_teacher.transpose(1, 0))
    if reduce:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2).sum() / batch_size
    else:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2) / batch_size
    return consistency_loss


class MLKD:
    def __init__(self, temperature, ce_loss_weight, kd_loss_weight, logit_stand):
        self.temperature = temperature
        self.ce_loss_weight = ce_loss_weight
        self.kd_loss_weight = kd_loss_weight
        self.logit_stand = logit_stand

    def forward_train(self, logits_student_weak, logits_student_strong, logits_teacher_weak,
                      logits_teacher_strong, target):
        batch_size, class_num = logits_student_strong.shape

        pred_teacher_weak = F.softmax(logits_teacher_weak.detach(), dim=1)
        confidence, pseudo_labels = pred_teacher_weak.max(dim=1)
        confidence = confidence.detach()
        conf_thresh = np.percentile(
            confidence.cpu().numpy().flatten(), 50
        )
        mask = confidence.le(conf_thresh).bool()

        class_confidence = torch.sum(pred_teacher_weak, dim=0)
        class_confidence = class_confidence.detach()
        class_confidence_thresh = np.percentile(
            class_confidence.cpu().numpy().flatten(), 50
        )
        class_conf_mask = class_confidence.le(class_confidence_thresh).bool()

        # losses
        loss_ce = self.ce_loss_weight * (F.cross_entropy(logits_student_weak, target) + F.cross_entropy(logits_student_strong, target))
        loss_kd_weak = self.kd_loss_weight * ((mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            self.temperature,
            # reduce=False
            logit_stand=self.logit_stand,
        ) * mask).mean()) + self.kd_loss_weight * ((mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            3.0,
            # reduce=False
            logit_stand=self.logit_stand,
        ) * mask).mean()) + self.kd_loss_weight * ((mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            5.0,
            # reduce=False
            logit_stand=self.logit_stand,
        ) * mask).mean()) + self.kd_loss_weight * ((mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            2.0,
            # reduce=False
            logit_stand=self.logit_stand,
        ) * mask).mean()) + self.kd_loss_weight * ((mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            6.0,
            # reduce=False
            logit_stand=self.logit_stand,
        ) * mask).mean())

        loss_kd_strong = self.kd_loss_weight * mlkd_kd_loss(
            logits_student_strong,
            logits_teacher_strong,
            self.temperature,
            logit_stand=self.logit_stand,
        ) + self.kd_loss_weight * mlkd_kd_loss(
            logits_student_strong,
            logits_teacher_strong,
            3.0,
            logit_stand=self.logit_stand,
        ) + self.kd_loss_weight * mlkd_kd_loss(
            logits_student_strong,
            logits_teacher_strong,
            5.0,
            logit_stand=self.logit_stand,
        ) + self.kd_loss_weight * mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            2.0,
            logit_stand=self.logit_stand,
        ) + self.kd_loss_weight * mlkd_kd_loss(
            logits_student_weak,
            logits_teacher_weak,
            6.0,
            logit_stand=self.logit_stand,
        )

        loss_cc_weak = self.kd_loss_weight * ((cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            self.temperature,
            # reduce=False
        ) * class_conf_mask).mean()) + self.kd_loss_weight * ((cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            3.0,
        ) * class_conf_mask).mean()) + self.kd_loss_weight * ((cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            5.0,
        ) * class_conf_mask).mean()) + self.kd_loss_weight * ((cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            2.0,
        ) * class_conf_mask).mean()) + self.kd_loss_weight * ((cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            6.0,
        ) * class_conf_mask).mean())
        loss_cc_strong = self.kd_loss_weight * cc_loss(
            logits_student_strong,
            logits_teacher_strong,
            self.temperature,
        ) + self.kd_loss_weight * cc_loss(
            logits_student_strong,
            logits_teacher_strong,
            3.0,
        ) + self.kd_loss_weight * cc_loss(
            logits_student_strong,
            logits_teacher_strong,
            5.0,
        ) + self.kd_loss_weight * cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            2.0,
        ) + self.kd_loss_weight * cc_loss(
            logits_student_weak,
            logits_teacher_weak,
            6.0,
        )
        loss_bc_weak = self.kd_loss_weight * ((bc_loss(
            logits_student_weak,
            logits_teacher_weak,
            self.temperature,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_weak,
            logits_teacher_weak,
            3.0,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_weak,
            logits_teacher_weak,
            5.0,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_weak,
            logits_teacher_weak,
            2.0,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_weak,
            logits_teacher_weak,
            6.0,
        ) * mask).mean())
        loss_bc_strong = self.kd_loss_weight * ((bc_loss(
            logits_student_strong,
            logits_teacher_strong,
            self.temperature,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_strong,
            logits_teacher_strong,
            3.0,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_strong,
            logits_teacher_strong,
            5.0,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_strong,
            logits_teacher_strong,
            2.0,
        ) * mask).mean()) + self.kd_loss_weight * ((bc_loss(
            logits_student_strong,
            logits_teacher_strong,
            6.0,
        ) * mask).mean())
        losses_dict = {
            "loss_ce": loss_ce,
            "loss_kd": loss_kd_weak + loss_kd_strong,
            "loss_cc": loss_cc_weak,
            "loss_bc": loss_bc_weak
        }
        return losses_dict
