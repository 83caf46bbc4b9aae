"""The published recipes as data, one file per family: ``repdistiller`` (RepDistiller's CIFAR-100
benchmark: methods, pairs, teachers), ``digits`` (its twin on the embedded digits, the logit
baselines there, and the digits teachers), ``consolidation`` and ``amalgamation`` (several teachers, at digits and
paper scale), ``function_matching`` (Beyer et al.: CIFAR-100, ImageNet, digits),
``imagenet`` (paper-scale data and fine-tuning they share), ``tables`` and ``published``
(published tables as jobs, and their numbers).

``configs/**/*.py`` are one-line ``get_config`` files that call these functions; every field
can still be overridden on the command line.
"""
from kd_jax.recipes.amalgamation import CFL_LEARNING_RATES, cub_dogs_amalgamation, digits_amalgamation
from kd_jax.recipes.consolidation import (digits_consolidation, digits_consolidation_with_target,
                                          imagenet_consolidation)
from kd_jax.recipes.digits import (DIGITS_BASELINES, DIGITS_TEACHERS, digits_base, digits_baselines,
                                   digits_distill, digits_downstream, digits_feature_statistics,
                                   digits_scarce_labels)
from kd_jax.recipes.function_matching import (cifar100_function_matching,
                                              digits_function_matching,
                                              imagenet_function_matching)
from kd_jax.recipes.imagenet import FINE_GRAINED_CLASSES, IMAGENET_WORKDIR
from kd_jax.recipes.baselines import imagenet_distill
from kd_jax.recipes.tables import (IMAGENET_TABLE_METHODS, TABLE_METHODS, cifar100_table,
                                   imagenet_table, parse_imagenet_table_arg, parse_table_arg)
from kd_jax.recipes.repdistiller import (CIFAR100_TEACHERS, LOW_LR_MODELS, METHODS, PAIRS,
                                         cifar100_distill, cifar100_teacher, method_objectives,
                                         parse_pair, teacher_workdir)

__all__ = ['CFL_LEARNING_RATES', 'CIFAR100_TEACHERS', 'DIGITS_BASELINES', 'DIGITS_TEACHERS', 'FINE_GRAINED_CLASSES', 'IMAGENET_TABLE_METHODS', 'IMAGENET_WORKDIR', 'LOW_LR_MODELS', 'METHODS', 'PAIRS', 'TABLE_METHODS', 'cifar100_distill', 'cifar100_function_matching', 'cifar100_table', 'cifar100_teacher', 'cub_dogs_amalgamation', 'digits_amalgamation', 'digits_base', 'digits_baselines', 'digits_consolidation', 'digits_consolidation_with_target', 'digits_distill', 'digits_downstream', 'digits_feature_statistics', 'digits_function_matching', 'digits_scarce_labels', 'imagenet_consolidation', 'imagenet_distill', 'imagenet_function_matching', 'imagenet_table', 'method_objectives', 'parse_imagenet_table_arg', 'parse_pair', 'parse_table_arg', 'teacher_workdir']
