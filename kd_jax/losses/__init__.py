"""Distillation losses as pure functions over arrays (NHWC feature maps). One module per
family:

  logits.py       cross_entropy, kd (Hinton), dkd (decoupled KD), soft_cross_entropy,
                  logit_l2, logit_standardize, dist, nkd, wttm, class_consistency and
                  batch_consistency (MLKD), ofa
  features.py     fitnet, attention_transfer, factor_transfer, paraphraser_reconstruction,
                  activation_boundaries, vid, neuron_selectivity_transfer, fsp,
                  hcl (ReviewKD)
  relations.py    similarity_preserving, correlation_congruence, rkd, pkt
  contrastive.py  crd (+ CRDMemory, nce, sample_contrast_index)
  statistics.py   mean_matching, stat_matching, adain, adain_loss, teacher_head_mse
  adaptation.py   adapted_teacher_loss (activation map adaptation)
  tokens.py       vitkd (+ random_token_mask): a ViT's tokens [B, N, D]
  amalgamation.py mmd2, reconstruction, cfl (common feature learning)
  common.py       l2_normalize, absolute, adaptive_avg_pool, match_spatial, smooth_l1; checks

Rules: this package imports nothing of kd_jax outside it; a loss's hyperparameters are
keyword arguments without defaults (the reference defaults live in the method, in
``kd_jax/methods/``); a per-layer loss takes one map per side (the method sums over the
layers it reads); every loss checks its inputs (``common.expects``: a list where one array
is expected, a wrong rank, unequal layer counts raise one line). Each docstring gives
shapes, reductions and paper. Losses compute in float32 whatever the input dtype, and put
``stop_gradient`` on the teacher's side.
"""
from kd_jax.losses.adaptation import adapted_teacher_loss
from kd_jax.losses.amalgamation import cfl, mmd2, reconstruction
from kd_jax.losses.common import (absolute, adaptive_avg_pool, l2_normalize, match_spatial,
                                  smooth_l1)
from kd_jax.losses.contrastive import CRDMemory, crd, crd_memory_init, nce, sample_contrast_index
from kd_jax.losses.features import (activation_boundaries, attention_map, attention_transfer,
                                    check_fsp_channels, factor_transfer, fitnet, fsp, fsp_matrix, hcl,
                                    neuron_selectivity_transfer, paraphraser_reconstruction,
                                    vid, vid_match)
from kd_jax.losses.logits import (batch_consistency, class_consistency, cross_entropy, dist,
                                  dkd, kd, logit_l2, logit_standardize, nkd, ofa,
                                  soft_cross_entropy, wttm)
from kd_jax.losses.relations import (correlation_congruence, pairwise_distances, pkt, rkd,
                                     similarity_preserving)
from kd_jax.losses.tokens import random_token_mask, vitkd
from kd_jax.losses.statistics import (adain, adain_loss, channel_mean_std, mean_matching,
                                      stat_matching, teacher_head_mse)

# Short names as in RepDistiller's --distill flags and the papers.
at = attention_transfer
ft = factor_transfer
ab = activation_boundaries
nst = neuron_selectivity_transfer
sp = similarity_preserving
cc = correlation_congruence
hint = fitnet

__all__ = [
    "CRDMemory", "ab", "absolute", "activation_boundaries", "adain", "adain_loss",
    "batch_consistency",
    "adapted_teacher_loss", "adaptive_avg_pool", "at", "attention_map", "attention_transfer",
    "cc", "cfl", "channel_mean_std", "class_consistency", "check_fsp_channels", "correlation_congruence", "crd", "crd_memory_init", "cross_entropy", "dist", "dkd",
    "factor_transfer", "fitnet", "fsp", "fsp_matrix", "ft", "hcl", "hint", "kd", "l2_normalize",
    "logit_l2", "logit_standardize", "match_spatial", "mean_matching", "mmd2", "nce", "nkd",
    "neuron_selectivity_transfer", "nst", "pairwise_distances", "paraphraser_reconstruction",
    "pkt", "reconstruction", "rkd", "sample_contrast_index", "similarity_preserving",
    "smooth_l1", "soft_cross_entropy", "sp", "stat_matching", "teacher_head_mse", "vid",
    "vid_match", "vitkd", "ofa", "random_token_mask", "wttm",
]
