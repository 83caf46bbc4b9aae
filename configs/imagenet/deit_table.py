"""The ViT methods' ImageNet rows beside their READMEs: DeiT-tiny and DeiT-small alone, with
DeiT's distillation token (hard) from a ResNet-50, and with ViTKD (and ViTKD + NKD) from the
next DeiT size (kd_jax/recipes/vit.py: DeiT's recipe, less what kd_jax lacks), 1 seed.

  python -m kd_jax.train --config=configs/imagenet/deit_table.py --workdir=workdirs/imagenet/deit
  python -m kd_jax.train --config=configs/imagenet/deit_table.py:tiny,3,student+deit ...

The argument is <sizes>[,<seeds>[,<methods>]]: sizes joined by '+' from tiny and small, methods
joined by '+' from student, deit, vitkd, vitkd_nkd. The teachers are read from
workdirs/imagenet/<teacher> (python -m kd_jax.convert --arch=resnet50 --torch=resnet50.pth
--out=workdirs/imagenet/resnet50; --arch=deit_small_patch16_224 for a timm DeiT-Small).
ImageNet needs its manual download in <data_dir>/downloads/manual. Use --dry_run for the budget.
"""
from kd_jax.recipes import vit


def get_config(arg="tiny+small"):
  sizes, seeds, methods = (arg.split(",") + ["", ""])[:3]
  return vit.imagenet_deit_table(tuple(sizes.split("+")), int(seeds or 1),
                                 tuple(methods.split("+")) if methods
                                 else vit.IMAGENET_VIT_TABLE_METHODS)
